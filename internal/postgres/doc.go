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
// No connection is trusted: every one authenticates with SCRAM-SHA-256,
// and pg_hba.conf, which Runway writes, admits nothing but the superuser
// "runway" over the instance's unix socket, whose directory only the
// server's OS user (and root) can enter, and each app role over loopback
// TCP to its own database. Passwords are random and kept, one 0600 file
// per role, in Config.SecretsDir, which only Runway's OS user can read.
package postgres
