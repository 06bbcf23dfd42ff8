// Package migrations holds homelabping's database migrations, goose SQL
// files embedded in the binaries that apply them.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
