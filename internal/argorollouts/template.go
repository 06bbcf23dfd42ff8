package argorollouts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/build"
)

// renderTemplates are the AnalysisTemplates of art's spec (the files of
// its analysisTemplates, read and checked as Runway's own canary reads
// them), in namespace, each prometheus provider's address set to
// prometheus: the cluster's Prometheus. Each is named <app>-<name>
// (templateName): the namespace is shared by every app of the
// environment; the Rollout's steps refer to them by that name.
func renderTemplates(art build.Artifact, env, namespace, prometheus string) ([]*unstructured.Unstructured, error) {
	if art.Spec == nil {
		return nil, nil
	}
	var out []*unstructured.Unstructured
	seen := map[string]string{}
	for _, f := range art.Spec.AnalysisTemplates {
		data, err := os.ReadFile(filepath.Join(art.Dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("reading analysis template file %s: %w", f, err)
		}
		ts, err := analysis.ParseFile(f, data)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if prev, ok := seen[t.Metadata.Name]; ok {
				return nil, fmt.Errorf("analysis template %q is defined in %s and %s", t.Metadata.Name, prev, f)
			}
			seen[t.Metadata.Name] = f
			u, err := templateObject(t, env, art.App, namespace, prometheus)
			if err != nil {
				return nil, fmt.Errorf("analysis template %q of %s: %w", t.Metadata.Name, f, err)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// maxName bounds an object's name (a DNS subdomain).
const maxName = 253

// templateName is the name of app's AnalysisTemplate name in its
// namespace: <app>-<name>, shortened with a hash of the whole when longer
// than a DNS subdomain may be.
func templateName(app, name string) string {
	n := app + "-" + name
	if len(n) <= maxName {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	h := hex.EncodeToString(sum[:])[:10]
	prefix := strings.TrimRight(n[:maxName-len(h)-1], "-.")
	return prefix + "-" + h
}

// templateObject is t as an object of the API server.
func templateObject(t *analysis.Template, env, app, namespace, prometheus string) (*unstructured.Unstructured, error) {
	c := *t
	c.Spec.Metrics = append([]analysis.MetricSpec(nil), t.Spec.Metrics...)
	for i, m := range c.Spec.Metrics {
		if m.Provider.Prometheus != nil {
			p := *m.Provider.Prometheus
			p.Address = prometheus
			c.Spec.Metrics[i].Provider.Prometheus = &p
		}
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	obj := map[string]any{}
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(apiVersion)
	u.SetKind("AnalysisTemplate")
	u.SetNamespace(namespace)
	u.SetName(templateName(app, t.Metadata.Name))
	labels := maps.Clone(t.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, objectLabels(env, app))
	u.SetLabels(labels)
	if len(t.Metadata.Annotations) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	}
	return u, nil
}
