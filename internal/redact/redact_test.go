package redact

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{name: "no secrets", in: "hello world", want: "hello world"},
		{name: "one secret", secrets: []string{"s3cr3t-token"}, in: "token=s3cr3t-token end", want: "token=[REDACTED] end"},
		{name: "twice", secrets: []string{"s3cr3t-token"}, in: "s3cr3t-token s3cr3t-token", want: "[REDACTED] [REDACTED]"},
		{name: "short ignored", secrets: []string{"short"}, in: "a short text", want: "a short text"},
		{name: "empty ignored", secrets: []string{""}, in: "text", want: "text"},
		{name: "overlapping secrets mask the union", secrets: []string{"abcdefgh12", "gh12345678"}, in: "xabcdefgh12345678y", want: "x[REDACTED]y"},
		{name: "nested secret", secrets: []string{"password1", "my-password1-long"}, in: "my-password1-long and password1", want: "[REDACTED] and [REDACTED]"},
		{name: "self-overlapping occurrences", secrets: []string{"aaaaaaaa"}, in: "baaaaaaaaaaab", want: "b[REDACTED]b"},
		{name: "adjacent secrets", secrets: []string{"11111111", "22222222"}, in: "1111111122222222", want: "[REDACTED]"},
		{name: "not present", secrets: []string{"s3cr3t-token"}, in: "s3cr3t-toke", want: "s3cr3t-toke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			r.Add(tt.secrets...)
			if got := r.String(tt.in); got != tt.want {
				t.Fatalf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	r.Add("s3cr3t-token") // must not panic
	if got := r.String("s3cr3t-token"); got != "s3cr3t-token" {
		t.Fatalf("nil String = %q", got)
	}
	var buf bytes.Buffer
	if w := r.Writer(&buf); w != &buf {
		t.Fatalf("nil Writer wrapped the writer: %T", w)
	}
}

func TestWriter(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		writes  []string
		later   []string // added after the writer was created, before the writes
		want    string
		// wantBeforeFlush, if set, is what must have reached the
		// underlying writer before Flush.
		wantBeforeFlush *string
	}{
		{name: "whole secret in one write", secrets: []string{"s3cr3t-token"}, writes: []string{"a s3cr3t-token b\n"}, want: "a [REDACTED] b\n"},
		{name: "split across two writes", secrets: []string{"s3cr3t-token"}, writes: []string{"a s3cr", "3t-token b\n"}, want: "a [REDACTED] b\n"},
		{name: "split byte by byte", secrets: []string{"s3cr3t-token"}, writes: strings.Split("x s3cr3t-token y\n", ""), want: "x [REDACTED] y\n"},
		{name: "overlapping split", secrets: []string{"abcdefgh12", "gh12345678"}, writes: []string{"xabcdefgh1", "2345", "678y\n"}, want: "x[REDACTED]y\n"},
		{name: "overlap continues after a complete secret", secrets: []string{"abcdefgh12", "gh12345678"}, writes: []string{"xabcdefgh12", "345678y\n"}, want: "x[REDACTED]y\n"},
		{name: "prefix that turns out not to be a secret", secrets: []string{"s3cr3t-token"}, writes: []string{"s3cr", "ew\n"}, want: "s3crew\n"},
		{name: "secret added after writer creation", later: []string{"late-secret-1"}, writes: []string{"value late-sec", "ret-1\n"}, want: "value [REDACTED]\n"},
		{name: "unfinished prefix flushed at the end", secrets: []string{"s3cr3t-token"}, writes: []string{"end s3cr3t"}, want: "end s3cr3t", wantBeforeFlush: ptr("end ")},
		{name: "line without secret prefix is written at once", secrets: []string{"s3cr3t-token"}, writes: []string{"plain line\n"}, want: "plain line\n", wantBeforeFlush: ptr("plain line\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			r.Add(tt.secrets...)
			var buf bytes.Buffer
			w := r.Writer(&buf)
			r.Add(tt.later...)
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if tt.wantBeforeFlush != nil && buf.String() != *tt.wantBeforeFlush {
				t.Fatalf("before flush: %q, want %q", buf.String(), *tt.wantBeforeFlush)
			}
			if err := w.(*Writer).Flush(); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tt.want {
				t.Fatalf("got %q, want %q", buf.String(), tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestWriterBoundedHold writes an endless run of a self-overlapping
// secret: the writer must not keep it all in memory.
func TestWriterBoundedHold(t *testing.T) {
	r := New()
	r.Add("aaaaaaaa")
	var buf bytes.Buffer
	w := r.Writer(&buf).(*Writer)
	chunk := []byte(strings.Repeat("a", 4096))
	for range 64 {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.pending) > maxHold+len(chunk) {
		t.Fatalf("writer holds %d bytes", len(w.pending))
	}
	if strings.Contains(buf.String(), "a") {
		t.Fatalf("secret leaked: %q", buf.String()[:64])
	}
}

func TestWriterConcurrent(t *testing.T) {
	r := New()
	r.Add("s3cr3t-token")
	var out syncBuffer
	w := r.Writer(&out)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				w.Write([]byte("line s3cr3t-token\n"))
				r.Add("another-secret")
			}
		})
	}
	wg.Wait()
	w.(*Writer).Flush()
	if strings.Contains(out.String(), "s3cr3t") {
		t.Fatal("secret leaked")
	}
	if n := strings.Count(out.String(), "line [REDACTED]\n"); n != 400 {
		t.Fatalf("%d redacted lines, want 400", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
