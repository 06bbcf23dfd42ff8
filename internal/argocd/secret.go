package argocd

import (
	"cmp"
	"fmt"

	"github.com/runway-cd/runway/internal/runtime"
)

// Object is a Kubernetes object as unstructured JSON.
type Object = map[string]any

// Namespace is env's namespace with the given prefix (zero value:
// DefaultNamespacePrefix), as the environment chart names it.
func Namespace(prefix, env string) string {
	return cmp.Or(prefix, DefaultNamespacePrefix) + env
}

// NamespaceObject is env's namespace as the environment chart makes it,
// for a server that creates it before Argo CD syncs (Argo CD adopts it).
func NamespaceObject(prefix, env string) (Object, error) {
	ns := Namespace(prefix, env)
	if !runtime.ValidName(ns) {
		return nil, fmt.Errorf("environment %q: namespace %q is not a DNS label", env, ns)
	}
	return Object{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": Object{
			"name":   ns,
			"labels": Object{LabelManagedBy: ManagedBy, LabelEnv: env},
		},
	}, nil
}

// ReporterSecretObject is the Secret the report hooks of env read: each
// workflow's token at the key named after the workflow.
func ReporterSecretObject(prefix, env string, tokens map[string]string) Object {
	return secretObject(Namespace(prefix, env), ReporterSecret, env, tokens)
}

// DatabaseSecretObject is the Secret of env's PostgreSQL passwords: key
// postgres for the server, one key per app.
func DatabaseSecretObject(prefix, env string, passwords map[string]string) Object {
	return secretObject(Namespace(prefix, env), DatabaseSecret, env, passwords)
}

func secretObject(ns, name, env string, data map[string]string) Object {
	sd := Object{}
	for k, v := range data {
		sd[k] = v
	}
	return Object{
		"apiVersion": "v1",
		"kind":       "Secret",
		"type":       "Opaque",
		"metadata": Object{
			"name":      name,
			"namespace": ns,
			"labels":    Object{LabelManagedBy: ManagedBy, LabelEnv: env},
		},
		"stringData": sd,
	}
}
