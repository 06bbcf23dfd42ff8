package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/argocd"
)

func exportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Render what makes another system run Runway's method",
		Example: "  runway export argocd --state ../state --repo-url https://github.com/acme/state.git --app ../web --reporter-url https://runway.example.com -o argocd/"}
	cmd.AddCommand(exportArgoCDCmd())
	return cmd
}

// exportListing is the file an export directory lists its files in, so
// that rendering again removes what is no longer rendered and nothing else.
const exportListing = ".runway-export"

func exportArgoCDCmd() *cobra.Command {
	var (
		o      argocd.Options
		state  string
		branch string
		apps   []string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "argocd --state DIR|URL --app DIR... --reporter-url URL [--prometheus URL] [-o DIR]",
		Short: "Render the ApplicationSet, Applications and Helm charts that make Argo CD sync Runway's environments",
		Long: `Render, from the state repository and the apps' runway.yaml, what makes Argo CD
and Argo Rollouts run Runway's method with Runway as the pipeline:

  applicationset.yaml            one Application per apps/staging/manifests/<env>.json
  application-production.yaml    production's Application
  charts/environment/            an environment's namespace and one Application per app
  charts/<app>/                  Deployment (staging) or Rollout (production), Service,
                                 AnalysisTemplates, PostSync/SyncFail hooks reporting to Runway
  charts/postgres/               the environment's PostgreSQL (StatefulSet, volume, Service)

Each environment's manifest JSON is its Helm values file, so Argo CD renders the
versions, revisions and images of every sync from the state repository itself.
Commit the output to the state repository at --chart-path and apply the two
top-level files to Argo CD's namespace. The reporter tokens and database
passwords are Secrets in each environment's namespace (runway-reporter,
runway-database), never in the output.

--state is a directory (a clone's work tree, read as files) or a git URL (cloned
with go-git). --app is an app repository, once per app: a checkout or a git URL
(its default branch is cloned); its runway.yaml and the AnalysisTemplate files
it names are read. The database service needs none.
Without -o the files are written to stdout, each after a "# file: PATH" line.
The output is the same for the same inputs.`,
		Example: `  # From a clone of the state repository and checkouts of the apps:
  runway export argocd --state ./state --repo-url https://git.example.com/state.git \
    --app ./homelabping --reporter-url http://runway.runway-system:8080 \
    --prometheus http://prometheus.monitoring:9090 --registry registry.example.com/runway \
    -o ./state/argocd

  # From the state repository's URL (also what Argo CD reads), to stdout:
  runway export argocd --state https://git.example.com/state.git --app ./homelabping \
    --reporter-url http://runway.runway-system:8080 --prometheus http://prometheus:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state == "" {
				return errors.New("--state is required: the state repository's directory or URL")
			}
			if len(apps) == 0 {
				return errors.New("--app is required: an app repository's directory, once per app")
			}
			if o.RepoURL == "" {
				if _, err := os.Stat(state); err == nil {
					return errors.New("--repo-url is required with a --state directory: the state repository's URL as Argo CD reaches it")
				}
				o.RepoURL = state
			}
			envs, err := argocd.LoadState(cmd.Context(), state, "", branch)
			if err != nil {
				return err
			}
			o.Manifests = envs
			for _, dir := range apps { // a directory or a git URL
				a, err := argocd.LoadAppSource(cmd.Context(), dir, "")
				if err != nil {
					return err
				}
				o.Apps = append(o.Apps, a)
			}
			files, err := argocd.Render(o)
			if err != nil {
				return err
			}
			if out == "" {
				return writeExportStream(cmd.OutOrStdout(), files)
			}
			if err := writeExportDir(out, files); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d files to %s\n", len(files), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "the state repository: a directory, or a git URL to clone")
	f.StringVar(&branch, "branch", "main", "the state repository's branch, when --state is a URL")
	f.StringArrayVar(&apps, "app", nil, "an app repository: its directory (a checkout) or git URL (its default branch is cloned); repeat for each app")
	f.StringVarP(&out, "output", "o", "", "directory to write the files to (created; a previous export there is replaced); empty: stdout")
	f.StringVar(&o.RepoURL, "repo-url", "", "the state repository's URL as Argo CD reaches it (default: --state when it is a URL)")
	f.StringVar(&o.Revision, "revision", argocd.DefaultRevision, "the state repository's revision Argo CD follows")
	f.StringVar(&o.ChartPath, "chart-path", argocd.DefaultChartPath, "where the output is committed in the state repository")
	f.StringVar(&o.ReporterURL, "reporter-url", "", "Runway's API as the hook Jobs reach it, scheme://host[:port] (required)")
	f.StringVar(&o.PrometheusAddress, "prometheus", "", "the cluster's Prometheus, written into every AnalysisTemplate's prometheus.address")
	f.StringVar(&o.Registry, "registry", "", "registry of the apps' images (REGISTRY/<app>:<version>); empty: the manifests' image names")
	f.StringVar(&o.ArgoCDNamespace, "argocd-namespace", argocd.DefaultArgoCDNamespace, "Argo CD's namespace, where the Applications are")
	f.StringVar(&o.Project, "project", argocd.DefaultProject, "the Applications' Argo CD project")
	f.StringVar(&o.DestinationServer, "destination-server", argocd.DefaultDestinationServer, "the cluster the apps run on, as Argo CD names it")
	f.StringVar(&o.NamespacePrefix, "namespace-prefix", argocd.DefaultNamespacePrefix, "start of every environment's namespace")
	f.StringVar(&o.HookImage, "hook-image", argocd.DefaultHookImage, "image of the report hooks (needs sh and curl)")
	f.StringVar(&o.DatabaseStorage, "database-storage", argocd.DefaultDatabaseStorage, "size of each environment's PostgreSQL volume")
	return cmd
}

// writeExportStream writes files one after the other, each after a
// "# file: PATH" line.
func writeExportStream(w io.Writer, files []argocd.File) error {
	var b bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&b, "# file: %s\n", f.Path)
		b.Write(f.Data)
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeExportDir writes files under dir. A dir that exists must be empty
// or hold an export: the files of the previous one that are not rendered
// again are removed, anything else is left alone.
func writeExportDir(dir string, files []argocd.File) error {
	previous, err := previousExport(dir)
	if err != nil {
		return err
	}
	root, err := openExportRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, f.Path)
		if err := root.MkdirAll(path.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("writing export to %s: %w", dir, err)
		}
		if err := root.WriteFile(f.Path, f.Data, 0o644); err != nil {
			return fmt.Errorf("writing export to %s: %w", dir, err)
		}
	}
	for _, p := range previous {
		if slices.Contains(names, p) {
			continue
		}
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s of the previous export: %w", p, err)
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if root.Remove(d) != nil { // not empty: kept
				break
			}
		}
	}
	listing := strings.Join(names, "\n") + "\n"
	if err := root.WriteFile(exportListing, []byte(listing), 0o644); err != nil {
		return fmt.Errorf("writing export to %s: %w", dir, err)
	}
	return nil
}

func openExportRoot(dir string) (*os.Root, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("writing export to %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("writing export to %s: %w", dir, err)
	}
	return root, nil
}

// previousExport lists the files of the export in dir, refusing a dir
// that holds anything else.
func previousExport(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("writing export to %s: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, exportListing))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("writing export to %s: the directory is not empty and holds no previous export (%s): choose an empty or new one", dir, exportListing)
	}
	if err != nil {
		return nil, fmt.Errorf("writing export to %s: %w", dir, err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		if !filepath.IsLocal(line) || strings.Contains(line, `\`) {
			return nil, fmt.Errorf("writing export to %s: %s lists %q, not a file of the export", dir, exportListing, line)
		}
		names = append(names, line)
	}
	return names, nil
}
