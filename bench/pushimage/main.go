// Command pushimage pushes a random image (config + N layers of
// incompressible bytes) to a registry, for bench/pull.sh.
//
//	go run ./bench/pushimage -layers 15 -size 4194304 127.0.0.1:5000/bench/app:v1
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	layers := flag.Int("layers", 15, "number of layers")
	size := flag.Int64("size", 4<<20, "bytes per layer")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pushimage [-layers N] [-size BYTES] REF")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *layers, *size); err != nil {
		fmt.Fprintln(os.Stderr, "pushimage:", err)
		os.Exit(1)
	}
}

func run(ref string, layers int, size int64) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := random.Image(size, int64(layers))
	if err != nil {
		return err
	}
	if err := remote.Write(r, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
