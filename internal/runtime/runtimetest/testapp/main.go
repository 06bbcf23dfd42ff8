// Command testapp is the program the runtime conformance suite
// (runtime/runtimetest) runs as replicas and jobs. A harness builds it
// once per test binary, for the local runtime as a binary in a directory,
// for a Kubernetes runtime into an image.
//
//	testapp [-host H] serve [-health PATH] [-unready N] [-never-ready] [-live PATH]
//	testapp [-host H] exit CODE
//	testapp job [-exit CODE] [-sleep DURATION] [-spawn]
//
// serve listens on H:$PORT (H: 127.0.0.1) and answers PATH (/healthz) 503
// to its first N probes (always with -never-ready), then 200; /info says
// who it is (a random instance ID drawn at start, its pid, how many
// probes it answered, its environment), /exit?code=N makes it exit with
// status N, /set?ready=0 makes PATH answer 503 (ready=1: 200 again) and
// /set?live=0 its liveness path (/livez) likewise. exit writes a line to stderr and exits with CODE at once. job
// prints "pid N" (with -spawn it then starts a child that sleeps an hour,
// its output on the job's, and prints "child pid N"), then "ENV k=v" for
// every variable it has, sleeps, prints "done" and exits with CODE.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Info is what /info answers.
type Info struct {
	Instance string   `json:"instance"`
	PID      int      `json:"pid"`
	Probes   int64    `json:"probes"`
	Env      []string `json:"env"`
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fail(2, "usage: testapp [-host H] serve|exit|job ...")
	}
	switch args[0] {
	case "serve":
		serve(*host, args[1:])
	case "exit":
		code := 1
		if len(args) > 1 {
			code, _ = strconv.Atoi(args[1])
		}
		fail(code, fmt.Sprintf("testapp: fatal: exiting at once with status %d", code))
	case "job":
		job(args[1:])
	default:
		fail(2, "testapp: unknown command "+args[0])
	}
}

func fail(code int, msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(code)
}

func serve(host string, args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	health := fs.String("health", "/healthz", "readiness path")
	unready := fs.Int64("unready", 0, "answer the first N probes 503")
	never := fs.Bool("never-ready", false, "answer every probe 503")
	live := fs.String("live", "/livez", "liveness path")
	_ = fs.Parse(args)
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	instance := hex.EncodeToString(id)
	var probes atomic.Int64
	var failReady, failLive atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc(*health, func(w http.ResponseWriter, r *http.Request) {
		if n := probes.Add(1); *never || n <= *unready || failReady.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(*live, func(w http.ResponseWriter, r *http.Request) {
		if failLive.Load() {
			http.Error(w, "dead", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "alive")
	})
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("ready"); v != "" {
			failReady.Store(v == "0")
		}
		if v := r.FormValue("live"); v != "" {
			failLive.Store(v == "0")
		}
		fmt.Fprintln(w, "set")
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		slices.Sort(env)
		_ = json.NewEncoder(w).Encode(Info{Instance: instance, PID: os.Getpid(), Probes: probes.Load(), Env: env})
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.FormValue("code"))
		if err != nil {
			http.Error(w, "code: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "exiting")
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() {
			time.Sleep(50 * time.Millisecond) // the answer leaves first
			fail(code, fmt.Sprintf("testapp: asked to exit with status %d", code))
		}()
	})
	fmt.Printf("testapp %s serving, pid %d\n", instance, os.Getpid())
	err := http.ListenAndServe(net.JoinHostPort(host, os.Getenv("PORT")), mux)
	fail(1, "testapp: "+err.Error())
}

func job(args []string) {
	fs := flag.NewFlagSet("job", flag.ExitOnError)
	code := fs.Int("exit", 0, "exit status")
	sleep := fs.Duration("sleep", 0, "how long to run")
	spawn := fs.Bool("spawn", false, "leave a child running (an hour) behind")
	quiet := fs.Bool("quiet", false, "print nothing")
	_ = fs.Parse(args)
	if *quiet {
		time.Sleep(*sleep)
		os.Exit(*code)
	}
	fmt.Printf("pid %d\n", os.Getpid())
	if *spawn {
		child := exec.Command(os.Args[0], "job", "-quiet", "-sleep=1h")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fail(1, "testapp: spawning: "+err.Error())
		}
		fmt.Printf("child pid %d\n", child.Process.Pid)
	}
	env := os.Environ()
	slices.Sort(env)
	for _, kv := range env {
		fmt.Printf("ENV %s\n", kv)
	}
	time.Sleep(*sleep)
	fmt.Println("done")
	os.Exit(*code)
}
