package gateway

import (
	"net"
	"strings"
)

// Host returns the Host name that reaches the app in env: "<app>.<domain>"
// for the production environment, "<app>.<env>.<domain>" otherwise.
func (g *Gateway) Host(env, app string) string {
	if env == g.prodEnv {
		return app + "." + g.domain
	}
	return app + "." + env + "." + g.domain
}

// parseHost maps a request's Host header to the environment and app it
// names. It ignores a port, letter case and one trailing dot, and accepts
// only labels that could name a route, so a hostile Host cannot reach
// anything but a 404.
func (g *Gateway) parseHost(host string) (env, app string, ok bool) {
	if strings.IndexByte(host, ':') >= 0 { // SplitHostPort allocates its error
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.ToLower(host)
	host = strings.TrimSuffix(host, ".")
	prefix, found := strings.CutSuffix(host, "."+g.domain)
	if !found {
		return "", "", false
	}
	app, env, staging := strings.Cut(prefix, ".")
	if !staging {
		env = g.prodEnv
	}
	if !validLabel(app) || !validLabel(env) {
		return "", "", false
	}
	return env, app, true
}
