// Command helper is the process the supervisor's tests supervise. It
// serves /healthz and /live on $ADDR (503 while $UNREADY_FILE or
// $DEAD_FILE exists), exits with $EXIT_CODE at once when $EXIT_NOW is set,
// ignores SIGTERM when $IGNORE_TERM is set, and otherwise exits 0 on
// SIGTERM.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	fmt.Printf("helper %d starting\n", os.Getpid())
	if os.Getenv("PRINT_ENV") != "" {
		for _, e := range os.Environ() {
			fmt.Println("env:", e)
		}
		wd, _ := os.Getwd()
		fmt.Println("cwd:", wd)
		fmt.Println("uid:", os.Getuid(), "gid:", os.Getgid())
	}
	if os.Getenv("EXIT_NOW") != "" {
		code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
		fmt.Println("helper exiting at once")
		os.Exit(code)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if addr := os.Getenv("ADDR"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(3)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", check(os.Getenv("UNREADY_FILE")))
		mux.HandleFunc("/live", check(os.Getenv("DEAD_FILE")))
		go func() { _ = http.Serve(ln, mux) }()
	}
	for sig := range sigs {
		fmt.Println("helper got", sig)
		if os.Getenv("IGNORE_TERM") == "" {
			os.Exit(0)
		}
	}
}

func check(file string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if file != "" {
			if _, err := os.Stat(file); err == nil {
				http.Error(w, "not ok", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	}
}
