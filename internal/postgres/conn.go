package postgres

import (
	"net"
	"net/url"
	"strconv"
)

// Conn is what an app gets to reach its database.
type Conn struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
}

// URL is the connection URL,
// postgres://user:password@host:port/database?sslmode=disable, escaped.
func (c Conn) URL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.User, c.Password),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + c.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Env is the connection as environment variables, libpq's (PGHOST ...)
// and DATABASE_URL.
func (c Conn) Env() []string {
	return []string{
		"PGHOST=" + c.Host,
		"PGPORT=" + strconv.Itoa(c.Port),
		"PGUSER=" + c.User,
		"PGPASSWORD=" + c.Password,
		"PGDATABASE=" + c.Database,
		"DATABASE_URL=" + c.URL(),
	}
}
