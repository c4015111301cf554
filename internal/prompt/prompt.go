// Package prompt reads secrets from a terminal or standard input for the
// command-line tools.
package prompt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Password asks for a new password: twice on a terminal (never echoed),
// otherwise the first line of in.
func Password(in io.Reader, prompt io.Writer) (string, error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		line, err := Line(in)
		if err == nil && line == "" {
			err = errors.New("empty password on standard input")
		}
		return line, err
	}
	ask := func(p string) (string, error) {
		fmt.Fprint(prompt, p)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		return string(b), err
	}
	a, err := ask("Password: ")
	if err != nil {
		return "", err
	}
	b, err := ask("Again: ")
	switch {
	case err != nil:
		return "", err
	case a != b:
		return "", errors.New("the passwords differ")
	case a == "":
		return "", errors.New("empty password")
	}
	return a, nil
}

// Line reads the first line of in, without its line end (a password
// given on standard input).
func Line(in io.Reader) (string, error) {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
