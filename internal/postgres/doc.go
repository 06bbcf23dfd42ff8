// Package postgres runs a real PostgreSQL server per Runway environment.
//
// Start initialises an instance directory (data directory, socket
// directory, server log) with initdb and starts the server on a free
// loopback port in its own process group; EnsureDatabase gives an app a
// login role and a database of its own; Stop and Remove end the server and
// delete every trace of it.
//
// PostgreSQL refuses to run as root. When Runway runs as root the instance
// is initialised and run as an unprivileged OS user (Config.RunAsUser), its
// directory is handed to that user and its ancestors are made traversable.
//
// The superuser is named "runway" and may connect only over the instance's
// unix socket (trust authentication), whose directory only the server's OS
// user can enter. Apps connect over TCP with a password (SCRAM-SHA-256).
package postgres
