package cli

import (
	"strings"
	"testing"
)

func TestCompletion(t *testing.T) {
	srv := newTestAPI(t, nil)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"pipeline ids", []string{"pipelines", "logs"}, []string{"web-3\tweb Running", "api-7\tapi Failed"}},
		{"apps", []string{"rollout", "watch"}, []string{"api", "web"}},
		{"environments", []string{"envs", "get"}, []string{"production", "web-v20261201114500"}},
		{"analysis runs", []string{"analysisruns", "get"}, []string{"web-v20261201114500-step3-1\tInconclusive"}},
		{"formats", []string{"pipelines", "ls", "-o"}, []string{"json", "yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The group's API flags, then the rest and the word to complete.
			args := append([]string{"__complete", tt.args[0], "--api", srv.URL, "--token", testToken}, tt.args[1:]...)
			args = append(args, "")
			r := cliEnv{}.run(t.Context(), nil, args...)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w+"\n") {
					t.Errorf("no %q in the completions:\n%s", w, r.stdout)
				}
			}
		})
	}
}
