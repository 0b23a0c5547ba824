// Command nginx stands in for the nginx images critest runs: its process
// name is nginx, its command line reads "nginx: master process ...", it
// writes /var/run/nginx.pid and answers every HTTP request with 200 on
// $NGINX_ADDR. SIGTERM, SIGINT and SIGQUIT end it (also as PID 1).
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

const masterArgv0 = "nginx: master process /usr/sbin/nginx -g daemon off;"

func main() {
	if !strings.HasPrefix(os.Args[0], "nginx: master") {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, []string{masterArgv0}, os.Environ())
		}
		fmt.Fprintln(os.Stderr, "nginx: re-exec:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() { <-sigs; os.Exit(0) }()
	addr := os.Getenv("NGINX_ADDR")
	if addr == "" {
		addr = ":80"
	}
	if err := os.MkdirAll("/var/run", 0o755); err == nil {
		os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	fmt.Println("nginx: listening on", addr)
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "<html><body><h1>Welcome to nginx!</h1></body></html>")
	}))
	fmt.Fprintln(os.Stderr, "nginx:", err)
	os.Exit(1)
}
