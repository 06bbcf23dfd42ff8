// Command probe is the hostile app of the privilege test: run as a job
// ("probe check <spec>") or as a replica ("probe serve", answering
// /healthz and /probe), it tries what its spec lists and reports each
// attempt as a JSON line "PROBE {...}" (and its environment as "ENV
// [...]"), so the test can assert every one was refused.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// attempt is one thing to try.
type attempt struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // list, read, write, pg
	Path string `json:"path"` // a file or dir; for pg a connection string
}

// result says how an attempt went.
type result struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Err  string `json:"err,omitempty"`
}

func try(ctx context.Context, a attempt) result {
	var err error
	switch a.Kind {
	case "list":
		_, err = os.ReadDir(a.Path)
	case "read":
		_, err = os.ReadFile(a.Path)
	case "write":
		err = os.WriteFile(a.Path, []byte("probe was here\n"), 0o600)
	case "pg":
		err = query(ctx, a.Path)
	default:
		err = fmt.Errorf("unknown kind %q", a.Kind)
	}
	r := result{Name: a.Name, OK: err == nil}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

func query(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "select 1").Scan(&one)
}

func run(ctx context.Context, spec string) []result {
	var attempts []attempt
	if err := json.Unmarshal([]byte(spec), &attempts); err != nil {
		return []result{{Name: "spec", Err: err.Error()}}
	}
	out := make([]result, 0, len(attempts))
	for _, a := range attempts {
		out = append(out, try(ctx, a))
	}
	return out
}

func report(results []result) {
	for _, r := range results {
		b, _ := json.Marshal(r)
		fmt.Printf("PROBE %s\n", b)
	}
	env, _ := json.Marshal(os.Environ())
	fmt.Printf("ENV %s\n", env)
}

func main() {
	ctx := context.Background()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe check <spec> | probe serve")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		report(run(ctx, os.Args[2]))
	case "serve":
		// Something of this environment's own for the others to go after.
		home := os.Getenv("HOME")
		if err := os.WriteFile(filepath.Join(home, "note.txt"), []byte("private to "+os.Getenv("RUNWAY_ENV")+"\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "writing the note:", err)
			os.Exit(1)
		}
		fmt.Println("serving; this line is private to the environment")
		http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		http.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(run(r.Context(), r.FormValue("spec")))
		})
		http.HandleFunc("/environ", func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(os.Environ())
		})
		if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
