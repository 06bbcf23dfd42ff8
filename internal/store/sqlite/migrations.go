package sqlite

// migrations are the schema versions in order: entry i takes the database
// from PRAGMA user_version i to i+1. Append new entries; never edit or
// reorder applied ones. An entry may hold several statements.
var migrations = []string{
	// 1: reporter expectations and reports; webhook delivery dedup.
	`
CREATE TABLE reporter_expectations (
	workflow   TEXT PRIMARY KEY,
	apps       TEXT NOT NULL,    -- JSON array of app names, in submitted order
	created_ns INTEGER NOT NULL
) STRICT;

-- No foreign key to reporter_expectations: a report may arrive before its
-- workflow is submitted.
CREATE TABLE reporter_reports (
	workflow    TEXT NOT NULL,
	app         TEXT NOT NULL,
	success     INTEGER NOT NULL CHECK (success IN (0, 1)),
	message     TEXT NOT NULL,
	reported_ns INTEGER NOT NULL,
	PRIMARY KEY (workflow, app)
) STRICT;

CREATE TABLE webhook_deliveries (
	delivery    TEXT PRIMARY KEY,
	pipeline_id TEXT NOT NULL,
	received_ns INTEGER NOT NULL
) STRICT;
`,
	// 2: pipelines, one JSON document each. A version is unique across
	// apps: it also names the staging environment.
	`
CREATE TABLE pipelines (
	id         TEXT PRIMARY KEY,
	app        TEXT NOT NULL,
	version    TEXT,
	phase      TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	doc        TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX pipelines_version ON pipelines (version) WHERE version IS NOT NULL;
CREATE INDEX pipelines_created ON pipelines (created_ns);
`,
	// 3: analysis runs with their measurements, one JSON document each.
	`
CREATE TABLE analysis_runs (
	name       TEXT PRIMARY KEY,
	env        TEXT NOT NULL,
	app        TEXT NOT NULL,
	phase      TEXT NOT NULL,
	started_ns INTEGER NOT NULL,
	doc        TEXT NOT NULL
) STRICT;
CREATE INDEX analysis_runs_started ON analysis_runs (started_ns);
`,
	// 4: rollout checkpoints: one row per rollout (env, app, canary
	// version), the whole state as JSON, so a restarted control plane
	// resumes a canary at the step and weight it had.
	`
CREATE TABLE rollouts (
	env        TEXT NOT NULL,
	app        TEXT NOT NULL,
	canary     TEXT NOT NULL,
	finished   INTEGER NOT NULL CHECK (finished IN (0, 1)),
	started_ns INTEGER NOT NULL,
	doc        TEXT NOT NULL,
	PRIMARY KEY (env, app, canary)
) STRICT;
CREATE INDEX rollouts_unfinished ON rollouts (env, app) WHERE finished = 0;
`,
	// 5: each reporter expectation's bearer token for outside hooks
	// (64 hex characters). Rows from before this version get '' and are
	// given a token on first use (see ExpectationToken); '' never matches.
	`
ALTER TABLE reporter_expectations ADD COLUMN token TEXT NOT NULL DEFAULT '';
`,
	// 6: the rollout controller's record of each app in an environment
	// (rollout.AppRecord: the version serving as stable), one JSON
	// document each. A new table: a database from before starts with no
	// records (GetApp answers rollout.ErrAppNotFound).
	`
CREATE TABLE rollout_apps (
	env        TEXT NOT NULL,
	app        TEXT NOT NULL,
	updated_ns INTEGER NOT NULL,
	doc        TEXT NOT NULL,
	PRIMARY KEY (env, app)
) STRICT;
`,
	// 7: a report's outcome (reporter.Outcome, '' for an ordinary
	// report), kept as a code of its own rather than in the message.
	// Rows from before get ''.
	`
ALTER TABLE reporter_reports ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
`,
}
