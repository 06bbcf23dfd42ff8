// Command simapp is what the node agent's tests run in pods.
//
//	simapp serve         listen on $HOST:$PORT: /healthz 200, /livez 200
//	                     (500 with LIVE=fail), /env the environment, /id
//	                     pid and uid
//	simapp crash CODE    print a line and exit with CODE
//	simapp print N CODE  print "line i" for i in 1..N, exit with CODE
//	simapp tick N        print "tick i" every 100ms N times, then exit 0
//	simapp stubborn      print "pid P", ignore SIGTERM, sleep
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: simapp serve|crash|print|tick|stubborn")
		os.Exit(2)
	}
	arg := func(i, def int) int {
		if len(os.Args) > i {
			if n, err := strconv.Atoi(os.Args[i]); err == nil {
				return n
			}
		}
		return def
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "crash":
		fmt.Println("simapp: crashing")
		os.Exit(arg(2, 1))
	case "print":
		for i := 1; i <= arg(2, 3); i++ {
			fmt.Printf("line %d\n", i)
		}
		os.Exit(arg(3, 0))
	case "tick":
		for i := 1; i <= arg(2, 10); i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(100 * time.Millisecond)
		}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Printf("pid %d\n", os.Getpid())
		time.Sleep(time.Hour)
	}
}

func serve() {
	addr := net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT"))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("LIVE") == "fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(os.Environ())
	})
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		wd, _ := os.Getwd()
		json.NewEncoder(w).Encode(map[string]any{"pid": os.Getpid(), "uid": os.Getuid(), "wd": wd})
	})
	fmt.Printf("listening on %s\n", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
