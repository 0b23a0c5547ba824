// Command nonewprivs stands in for the nonewprivs image: installed
// setuid-root, it prints the effective uid it runs with.
package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf("Effective uid: %d\n", os.Geteuid()) }
