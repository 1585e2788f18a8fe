// Package testutil holds helpers shared by tests: free ports, short ipc
// directories, polling with a deadline, binaries built once per test run,
// and child processes whose output can be waited on.
package testutil
