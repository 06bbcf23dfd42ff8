package local

import (
	"context"
	"slices"

	"github.com/runway-cd/runway/internal/runtime"
)

// Status implements runtime.Replicas: what the supervisor reports of each
// replica of app at version in env, by index, with the end of its log.
func (r *Runtime) Status(env, app, version string) []runtime.ReplicaStatus {
	if checkReplicaSet(runtime.ReplicaSet{Env: env, App: app, Version: version}) != nil {
		return nil // nothing can run under an invalid name
	}
	sup, err := r.supervisor()
	if err != nil {
		r.log.Warn("reading replica status", "env", env, "app", app, "version", version, "err", err)
		return nil
	}
	var out []runtime.ReplicaStatus
	list, err := sup.ListContext(context.Background(), env)
	if err != nil {
		r.log.Warn("reading replica status", "env", env, "app", app, "version", version, "err", err)
		return nil
	}
	for _, st := range list {
		ref, ok := parseReplicaID(st.ID)
		if !ok || ref.env != env || ref.app != app || ref.version != version {
			continue
		}
		if full, ok, err := sup.GetContext(context.Background(), st.ID); err == nil && ok {
			st = full // with its log tail
		}
		out = append(out, replicaStatus(ref.index, st))
	}
	slices.SortFunc(out, func(a, b runtime.ReplicaStatus) int { return a.Index - b.Index })
	return out
}
