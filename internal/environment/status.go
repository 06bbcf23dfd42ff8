package environment

import (
	"sort"
	"strings"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// EnvStatus is an environment as the API shows it.
type EnvStatus struct {
	Name     string      `json:"name"`
	Workflow string      `json:"workflow,omitempty"`
	Apps     []AppStatus `json:"apps"`
	// Adopted marks an environment listed as the gateway serves it: the
	// control plane started but has not read the state repository since,
	// so the environment is not reconciled yet.
	Adopted bool `json:"adopted,omitempty"`
}

// AppStatus is an app of an environment as the API shows it.
type AppStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	URL     string `json:"url,omitempty"`
	// HostURL is the same app by name on the gateway's shared listener.
	HostURL  string   `json:"hostURL,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
	// Health is each replica's state as the runtime sees it now:
	// readiness, restarts, the last exit and the end of its log.
	Health []runtime.ReplicaStatus `json:"health,omitempty"`
	// Starting is a version whose replicas are being started (a staging
	// environment coming up); Health is theirs while Version is empty.
	Starting string `json:"startingVersion,omitempty"`
	Failed   string `json:"failedVersion,omitempty"`
}

// Status lists the environments and what runs in them now. It never waits
// for a reconcile (which may be creating a staging environment for
// seconds): it copies the controller's state under a short lock and asks
// the rest outside it. A production app's version is the rollout
// controller's stable one and its replicas are its route's stable
// backends. Until the state repository was first read it also lists what
// the gateway serves, marked adopted. Callers may modify the result.
func (c *Controller) Status() []EnvStatus {
	out, synced := c.statusOfState()
	for i := range out {
		es := &out[i]
		for j := range es.Apps {
			a := &es.Apps[j]
			if es.Name == manifest.ProductionEnv && a.Version == "" {
				c.productionApp(a)
			}
			if len(a.Replicas) > 0 {
				a.URL, a.HostURL = c.URL(es.Name, a.Name), c.HostURL(es.Name, a.Name)
			}
			c.health(es.Name, a)
		}
	}
	if !synced {
		out = append(out, c.adopted()...)
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	}
	return out
}

// statusOfState copies what the controller runs, under its mutex. A
// production app that is not a service is left empty for productionApp.
func (c *Controller) statusOfState() (out []EnvStatus, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.envs))
	for n := range c.envs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		st := c.envs[name]
		es := EnvStatus{Name: name, Workflow: st.manifest.DeployingWorkflowName}
		apps := make([]string, 0, len(st.apps))
		for n := range st.apps {
			apps = append(apps, n)
		}
		sort.Strings(apps)
		for _, n := range apps {
			as := st.apps[n]
			a := AppStatus{Name: n, Failed: as.failed}
			if name != manifest.ProductionEnv || as.entry != nil && isService(as.entry) {
				a.Version, a.Starting = as.version, as.starting
				for _, b := range as.backends {
					a.Replicas = append(a.Replicas, b.Addr)
				}
			}
			es.Apps = append(es.Apps, a)
		}
		out = append(out, es)
	}
	return out, c.snap != nil
}

// productionApp fills in a production app from the rollout controller
// and the gateway: they own which version serves there.
func (c *Controller) productionApp(a *AppStatus) {
	a.Version = c.rollouts.Stable(manifest.ProductionEnv, a.Name)
	if a.Version == "" {
		return
	}
	if r, ok := c.router.Route(manifest.ProductionEnv, a.Name); ok {
		a.Replicas = addrs(r.Stable)
	}
}

func addrs(backends []gateway.Backend) []string {
	var out []string
	for _, b := range backends {
		out = append(out, b.Addr)
	}
	return out
}

// health reads a's replicas' health now, not at the last pass: a replica
// may have been restarted by the data plane since.
func (c *Controller) health(env string, a *AppStatus) {
	switch {
	case a.Version != "" && len(a.Replicas) > 0:
		a.Health = c.rt.Status(env, a.Name, a.Version)
	case a.Starting != "":
		a.Health = c.rt.Status(env, a.Name, a.Starting)
	default:
		return
	}
	for k := range a.Health {
		if c.opts.Redact == nil {
			a.Health[k].LogTail = ""
		} else {
			a.Health[k].LogTail = c.opts.Redact(a.Health[k].LogTail)
		}
	}
}

// adopted lists what the gateway serves in environments not reconciled yet.
func (c *Controller) adopted() []EnvStatus {
	var out []EnvStatus
	for _, r := range c.router.Routes() { // sorted by env, then app
		c.mu.Lock()
		_, known := c.envs[r.Env]
		c.mu.Unlock()
		if known {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Name != r.Env {
			out = append(out, EnvStatus{Name: r.Env, Adopted: true})
		}
		a := AppStatus{Name: r.App, Version: r.StableVersion, URL: c.URL(r.Env, r.App), HostURL: c.HostURL(r.Env, r.App), Replicas: addrs(r.Stable)}
		out[len(out)-1].Apps = append(out[len(out)-1].Apps, a)
	}
	return out
}

// URL is an app's address in an environment: the gateway's listener of
// the app's route (http://127.0.0.1:PORT, which every client reaches as it
// is), or, for a gateway without one, its name on the shared listener.
func (c *Controller) URL(env, app string) string {
	if r, ok := c.router.Route(env, app); ok && r.Listen != "" {
		return "http://" + r.Listen
	}
	return c.HostURL(env, app)
}

// HostURL is an app's address in an environment by name on the gateway's
// shared listener: http://<app>.<env>.<domain>:PORT (production:
// http://<app>.<domain>:PORT). Clients that resolve *.localhost (browsers,
// curl) reach it as it is; others need the gateway's address to dial.
func (c *Controller) HostURL(env, app string) string {
	port := c.opts.GatewayAddr
	if i := strings.LastIndex(port, ":"); i >= 0 {
		port = port[i:]
	}
	return "http://" + c.router.Host(env, app) + port
}
