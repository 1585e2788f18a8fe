// Package conventions checks the repository's structural rules
// (shared/docs/style.md §8): services never import each other, every
// package has a doc.go, internal code never prints with fmt.Print*, and
// file names have no hyphens.
package conventions
