package gitops

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Runway never checks the state repository out: it reads manifests from
// the commit's trees and writes new commits as objects. So nothing it does
// follows a symlink a person committed (apps/staging/manifests -> /etc
// writes nothing anywhere), and a file name go-git's checkout or the local
// filesystem refuses (nul.json, a name with a backslash or a control
// character, a name longer than the filesystem allows) does not block the
// commits that do not touch it: its tree entry is carried over as it is.

// errNotDir is returned by subtree when a path component is not a
// directory in the tree (a symlink, a file or a submodule).
var errNotDir = errors.New("not a directory")

// entry returns the entry of t named name, or nil. Names are compared as
// stored: no path validation, which is the reader's job.
func entry(t *object.Tree, name string) *object.TreeEntry {
	if t == nil {
		return nil
	}
	for i := range t.Entries {
		if t.Entries[i].Name == name {
			return &t.Entries[i]
		}
	}
	return nil
}

// subtree walks dir (slash-separated, relative to root) down root's trees.
// It returns nil, nil when a component is absent, and an error wrapping
// errNotDir, naming the component and what it is, when one is not a
// directory.
func subtree(s storer.EncodedObjectStorer, root *object.Tree, dir string) (*object.Tree, error) {
	t := root
	walked := ""
	for _, name := range strings.Split(dir, "/") {
		walked = path.Join(walked, name)
		e := entry(t, name)
		if e == nil {
			return nil, nil
		}
		if e.Mode != filemode.Dir {
			return nil, fmt.Errorf("%s is %s: %w", walked, describeMode(e.Mode), errNotDir)
		}
		next, err := object.GetTree(s, e.Hash)
		if err != nil {
			return nil, fmt.Errorf("reading tree %s: %w", walked, err)
		}
		t = next
	}
	return t, nil
}

// describeMode names what a tree entry of mode m is, for errors.
func describeMode(m filemode.FileMode) string {
	switch m {
	case filemode.Dir:
		return "a directory"
	case filemode.Symlink:
		return "a symlink"
	case filemode.Submodule:
		return "a submodule"
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		return "a file"
	default:
		return fmt.Sprintf("an entry of mode %s", m)
	}
}

// isFile reports whether m is a regular file (executable or not).
func isFile(m filemode.FileMode) bool {
	return m == filemode.Regular || m == filemode.Executable || m == filemode.Deprecated
}

// editTree returns the hash of t with the file at p (slash-separated,
// relative to t) set to blob, or removed when blob is nil. t may be nil (a
// directory that does not exist yet). empty reports that the result has no
// entries, so the caller drops it as git does. Every other entry is kept
// byte for byte. A component of p that is not a directory, or a final
// entry that is not a regular file, is refused: Runway neither writes
// through a symlink nor replaces one.
func editTree(s storer.EncodedObjectStorer, t *object.Tree, p string, blob *plumbing.Hash) (hash plumbing.Hash, empty bool, err error) {
	return editTreeMode(s, t, p, blob, filemode.Regular)
}

// editTreeMode is editTree writing an entry of mode (tests plant symlinks
// with it).
func editTreeMode(s storer.EncodedObjectStorer, t *object.Tree, p string, blob *plumbing.Hash, mode filemode.FileMode) (hash plumbing.Hash, empty bool, err error) {
	name, rest, nested := strings.Cut(p, "/")
	var entries []object.TreeEntry
	if t != nil {
		entries = append(entries, t.Entries...)
	}
	idx := -1
	for i := range entries {
		if entries[i].Name == name {
			idx = i
			break
		}
	}
	if nested {
		var sub *object.Tree
		if idx >= 0 {
			if entries[idx].Mode != filemode.Dir {
				return plumbing.ZeroHash, false, fmt.Errorf("%s is %s: %w", name, describeMode(entries[idx].Mode), errNotDir)
			}
			if sub, err = object.GetTree(s, entries[idx].Hash); err != nil {
				return plumbing.ZeroHash, false, fmt.Errorf("reading tree %s: %w", name, err)
			}
		} else if blob == nil {
			return treeHash(t), t == nil || len(t.Entries) == 0, nil // removing from a directory that is not there
		}
		h, subEmpty, err := editTreeMode(s, sub, rest, blob, mode)
		if err != nil {
			return plumbing.ZeroHash, false, prefixPath(name, err)
		}
		switch {
		case subEmpty && idx >= 0:
			entries = append(entries[:idx], entries[idx+1:]...)
		case subEmpty:
		case idx >= 0:
			entries[idx].Hash = h
		default:
			entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		}
	} else {
		if idx >= 0 && !isFile(entries[idx].Mode) {
			return plumbing.ZeroHash, false, fmt.Errorf("%s is %s, not a file: refusing to replace it", name, describeMode(entries[idx].Mode))
		}
		switch {
		case blob == nil && idx >= 0:
			entries = append(entries[:idx], entries[idx+1:]...)
		case blob == nil:
		case idx >= 0:
			entries[idx].Hash, entries[idx].Mode = *blob, mode
		default:
			entries = append(entries, object.TreeEntry{Name: name, Mode: mode, Hash: *blob})
		}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, true, nil
	}
	sortEntries(entries)
	h, err := storeTree(s, entries)
	return h, false, err
}

// prefixPath puts dir in front of the path an editTree error names.
func prefixPath(dir string, err error) error {
	return &pathError{dir: dir, err: err}
}

type pathError struct {
	dir string
	err error
}

func (e *pathError) Error() string { return e.dir + "/" + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

func treeHash(t *object.Tree) plumbing.Hash {
	if t == nil {
		return plumbing.ZeroHash
	}
	return t.Hash
}

// sortEntries orders entries as git does (a directory's name compared as
// if it ended in "/").
func sortEntries(entries []object.TreeEntry) {
	sort.Stable(object.TreeEntrySorter(entries))
}

func storeTree(s storer.EncodedObjectStorer, entries []object.TreeEntry) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encoding tree: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("storing tree: %w", err)
	}
	return h, nil
}

func storeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("writing blob: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("writing blob: %w", err)
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("writing blob: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("storing blob: %w", err)
	}
	return h, nil
}
