// Package postgres runs a real PostgreSQL server per Runway environment.
//
// Start initialises an instance directory (data directory, socket
// directory, server log) with initdb and starts the server on a free
// loopback port in its own process group; EnsureDatabase gives an app a
// login role and a database of its own; Stop and Remove end the server and
// delete every trace of it.
//
// initdb takes most of a new environment's start, so with
// Config.TemplateDir a cluster is initialised once per PostgreSQL binary,
// initdb settings and OS user, and every new instance gets a copy. Copies
// share the template's system identifier (they never replicate from one
// another, so nothing tells them apart by it), but not its superuser
// password: the template's is kept beside it, used for the copy's first
// connection and replaced right then by the instance's own. A template
// also holds a spare database, runway_spare, created when it is built, so
// that the first EnsureDatabase of a copy renames it (a millisecond)
// instead of running CREATE DATABASE (hundreds); the copy is larger by as
// much (BenchmarkFirstDatabase weighs the two). Later apps of the same
// instance get databases created as usual, alike in owner and privileges.
//
// Copying a template is itself most of a new environment's start (file
// creation: some 1,300 files), so each template keeps up to two complete
// copies ready beside it, made in the background, and a new instance
// takes one by renaming it into its dir: a ready copy is taken by one
// instance only, a copy interrupted by a crash is never taken (it is made
// under a .tmp name and renamed when complete) and is removed by the next
// refill, and with none ready the instance copies the template as before.
// The ready copies cost twice the template's size on disk (~40–50 MB
// each); they must be on the file system of the instance dirs, or they go
// unused (logged once).
//
// The server runs as a child of the calling process, or, with
// Config.Launcher, under a launcher such as the data plane's supervisor,
// which keeps it running while the control plane is down and restarts it
// when it dies; an instance rides out such a restart, and Adopt finds the
// server through the launcher.
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
