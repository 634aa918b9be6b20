package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// onSIGHUP makes SIGHUP reload v's CA and CRL (v nil: a command that
// validates nothing, which SIGHUP must not kill either) and say so on w,
// until stop. It is listening when it returns.
func onSIGHUP(name string, w io.Writer, v *gilmsg.Validator) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-hup:
				switch {
				case v == nil:
					fmt.Fprintf(w, "gilmsg %s: SIGHUP: nothing to reload (this command validates nothing)\n", name)
				default:
					if err := v.Reload(); err != nil {
						fmt.Fprintf(w, "gilmsg %s: SIGHUP: reloading the CA and CRL: %v\n", name, err)
					} else {
						fmt.Fprintf(w, "gilmsg %s: SIGHUP: reloaded the CA and CRL\n", name)
					}
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(quit)
		<-done
	}
}
