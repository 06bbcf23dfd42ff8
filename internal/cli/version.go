package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release, set at link time:
//
//	go build -ldflags "-X github.com/runway-cd/runway/internal/cli.version=v1.2.3" ./cmd/runway
//
// Without it the module's version from the build info is shown (a
// `go install ...@v1.2.3` build), else "devel".
var version string

// buildInfo is what `runway version` shows.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	BuildTime string `json:"buildTime,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func versionInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			case "vcs.time":
				b.BuildTime = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// short is the one line of `runway --version`.
func (b buildInfo) short() string {
	s := b.Version
	if b.Commit != "" {
		s += " (" + shortSHA(b.Commit)
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s
}

func (a *app) versionCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print runway's version, commit and Go version",
		Example: `  runway version
  runway version -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, format)
			if err != nil {
				return err
			}
			b := versionInfo()
			return p.print(b, func() error {
				_, err := fmt.Fprintf(p.out, "runway %s %s %s\n", b.short(), b.GoVersion, b.Platform)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", formatTable, "output format: table, json or yaml")
	return cmd
}
