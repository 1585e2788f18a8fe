package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
)

// Three tack instances on one machine share one publish bus (README,
// "Scaling"): a ZeroMQ XPUB publisher their SUB inputs connect to, the same
// through `tack broker`, or NATS. One publish reaches every client of every
// instance exactly once; a killed instance loses only its own clients.

const (
	scaleInstances = 3
	scaleClients   = 4 // per instance
	scaleChannel   = "scale"
)

// startInstance starts `tack --id <id>` in its own dir and ports, with the
// handler's TCP inputs removed (the bus is its only publish input).
func startInstance(t *testing.T, id int, be string, handler map[string]string) *suite {
	t.Helper()
	return startInstanceWith(t, id, be, handler, nil)
}

// startInstanceWith is startInstance with extra [runner] keys.
func startInstanceWith(t *testing.T, id int, be string, handler, runner map[string]string) *suite {
	t.Helper()
	h := map[string]string{"push_in_spec": "", "push_in_http_port": "", "command_spec": "",
		"push_in_sub_specs": "", "push_in_sub_connect": ""}
	for k, v := range handler {
		h[k] = v
	}
	o := suiteOptions{routes: "* " + be + "\n", handler: h, runner: runner}
	dir := testutil.ShortTempDir(t)
	base := testutil.FreePortBlock(t, 5)
	s := &suite{dir: dir, httpPort: base + 4, portOffset: base - 5560}
	conf := writeConfig(t, dir, s.httpPort, s.portOffset, o)
	s.runner = testutil.Start(t, dir, nil, filepath.Join(binDir, "tack"), "--config", conf, "--merge-output",
		"--id", fmt.Sprint(id))
	s.waitReady(t)
	return s
}

// scaleFleet is the instances and their clients.
type scaleFleet struct {
	inst    []*suite
	clients [][]*heldStream // per instance
	closers [][]func()      // per instance, one per client
	probes  []*heldStream   // one per instance, on channel probe-<i>
}

// openFleet opens scaleClients streams on the shared channel per instance,
// then one probe stream each. The probe subscription is made after the
// shared channel's (on the same SUB socket or NATS connection), so once a
// probe item arrives, the bus knows the instance's shared subscription.
func openFleet(t *testing.T, inst []*suite, publish func(channel, content string)) *scaleFleet {
	t.Helper()
	f := &scaleFleet{inst: inst}
	for _, s := range inst {
		var cl []*heldStream
		var cs []func()
		for range scaleClients {
			br, closeFn := openStream(t, s.url("/stream?ch="+scaleChannel), "[open]\n")
			t.Cleanup(closeFn)
			cl = append(cl, watchStream(br))
			cs = append(cs, closeFn)
		}
		f.clients = append(f.clients, cl)
		f.closers = append(f.closers, cs)
	}
	// Let every handler subscribe the shared channel before the probes'.
	time.Sleep(500 * time.Millisecond)
	for i, s := range inst {
		br, closeFn := openStream(t, s.url(fmt.Sprintf("/stream?ch=probe-%d", i)), "[open]\n")
		t.Cleanup(closeFn)
		f.probes = append(f.probes, watchStream(br))
	}
	for i, h := range f.probes {
		waitProbe(t, h, func() { publish(fmt.Sprintf("probe-%d", i), "probe\n") })
	}
	return f
}

// waitProbe publishes with pub until h yields a line.
func waitProbe(t *testing.T, h *heldStream, pub func()) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		pub()
		select {
		case <-h.lines:
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatal("probe never arrived: the bus did not learn an instance's subscriptions")
}

// expectNext checks that every client of the instances in alive yields
// want as its next line.
func (f *scaleFleet) expectNext(t *testing.T, alive []int, want string) {
	t.Helper()
	for _, i := range alive {
		for k, h := range f.clients[i] {
			select {
			case l := <-h.lines:
				if l != want {
					t.Fatalf("instance %d client %d: got %q, want %q", i, k, l, want)
				}
			case e := <-h.end:
				t.Fatalf("instance %d client %d ended (%v) before %q", i, k, e.err, want)
			case <-time.After(15 * time.Second):
				t.Fatalf("instance %d client %d never received %q", i, k, want)
			}
		}
	}
}

// run publishes "one", checks every client got it, kills instance 1,
// publishes "two" and checks that the others' clients got it next (so
// "one" came exactly once) while instance 1's clients ended.
func (f *scaleFleet) run(t *testing.T, publish func(channel, content string)) {
	t.Helper()
	publish(scaleChannel, "one\n")
	f.expectNext(t, []int{0, 1, 2}, "one\n")

	killInstance(t, f.inst[1])
	for k, h := range f.clients[1] {
		select {
		case l := <-h.lines:
			t.Fatalf("killed instance's client %d got %q", k, l)
		case <-h.end:
		case <-time.After(15 * time.Second):
			t.Fatalf("killed instance's client %d still open", k)
		}
	}
	publish(scaleChannel, "two\n")
	f.expectNext(t, []int{0, 2}, "two\n")
	// and nothing more: no duplicate arrives late
	time.Sleep(500 * time.Millisecond)
	for _, i := range []int{0, 2} {
		for k, h := range f.clients[i] {
			select {
			case l := <-h.lines:
				t.Fatalf("instance %d client %d got extra %q", i, k, l)
			default:
			}
		}
	}
}

// killInstance SIGKILLs an instance's runner and then every service it
// started (each runs in its own process group), as when its machine dies.
func killInstance(t *testing.T, s *suite) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.dir, "run", "*.pid"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pid files in %s (%v)", s.dir, err)
	}
	var pids []int
	for _, f := range files {
		pids = append(pids, s.pidOf(t, filepath.Base(f)))
	}
	s.runner.Signal(syscall.SIGKILL)
	if !s.runner.Wait(10 * time.Second) {
		t.Fatal("killed runner still running")
	}
	for _, pid := range pids {
		// A service may already have gone after its runner.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
}

func scaleBackend(t *testing.T) string {
	return newBackendWith(t, http.HandlerFunc(holdStream))
}

// startInstances starts scaleInstances instances, --id 1, 2, ...
func startInstances(t *testing.T, be string, handler map[string]string) []*suite {
	t.Helper()
	var inst []*suite
	for i := range scaleInstances {
		inst = append(inst, startInstance(t, i+1, be, handler))
	}
	return inst
}

// runZMQFleet starts the instances with their SUB inputs connected to
// spec and runs the fleet test, publishing on x.
func runZMQFleet(t *testing.T, be, spec string, x *zmq.Socket) {
	t.Helper()
	inst := startInstances(t, be, map[string]string{"push_in_sub_specs": spec, "push_in_sub_connect": "true"})
	pub := zmqPublisher(t, x)
	f := openFleet(t, inst, pub)
	f.run(t, pub)
	// When the last clients of the shared channel leave (the killed
	// instance's went with it), the handlers unsubscribe and the XPUB
	// publisher hears it.
	for _, i := range []int{0, 2} {
		for _, c := range f.closers[i] {
			c()
		}
	}
	if err := x.SetRcvtimeo(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		b, err := x.RecvBytes(0)
		if err != nil {
			t.Fatalf("publisher never saw the unsubscription of %q (saw %q): %v", scaleChannel, seen, err)
		}
		if seen = append(seen, string(b)); string(b) == "\x00"+scaleChannel {
			break
		}
	}
	if !slices.Contains(seen, "\x01"+scaleChannel) {
		t.Errorf("publisher saw %q, no subscription of %q before its unsubscription", seen, scaleChannel)
	}
}

// zmqPublisher returns a publish function sending [channel, J<item>] on an
// XPUB socket owned by the test goroutine.
func zmqPublisher(t *testing.T, x *zmq.Socket) func(channel, content string) {
	return func(channel, content string) {
		t.Helper()
		if _, err := x.SendMessage(channel, "J"+streamItem(channel, content)); err != nil {
			t.Fatal(err)
		}
	}
}

func newXPUB(t *testing.T) *zmq.Socket {
	t.Helper()
	x, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	if err := x.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestE2EScaleZMQXPub: an XPUB publisher binds; three instances' SUB
// inputs connect to it (push_in_sub_connect).
func TestE2EScaleZMQXPub(t *testing.T) {
	be := scaleBackend(t)
	spec := "ipc://" + filepath.Join(testutil.ShortTempDir(t), "pub")
	x := newXPUB(t)
	if err := x.Bind(spec); err != nil {
		t.Fatal(err)
	}
	runZMQFleet(t, be, spec, x)
}

// TestE2EScaleZMQBoundSUBs: each instance binds its SUB input (Pushpin's
// default); one XPUB publisher connects to all three.
func TestE2EScaleZMQBoundSUBs(t *testing.T) {
	be := scaleBackend(t)
	dir := testutil.ShortTempDir(t)
	x := newXPUB(t)
	var inst []*suite
	for i := range scaleInstances {
		spec := "ipc://" + filepath.Join(dir, fmt.Sprintf("sub-%d", i))
		inst = append(inst, startInstance(t, i+1, be, map[string]string{"push_in_sub_specs": spec}))
		if err := x.Connect(spec); err != nil {
			t.Fatal(err)
		}
	}
	pub := zmqPublisher(t, x)
	openFleet(t, inst, pub).run(t, pub)
}

// TestE2EScaleZMQBroker: a publisher connects to `tack broker`'s XSUB, the
// instances' SUB inputs to its XPUB.
func TestE2EScaleZMQBroker(t *testing.T) {
	be := scaleBackend(t)
	dir := testutil.ShortTempDir(t)
	in, out := "ipc://"+filepath.Join(dir, "in"), "ipc://"+filepath.Join(dir, "out")
	broker := testutil.Start(t, dir, nil, filepath.Join(binDir, "tack"), "broker", "--xsub", in, "--xpub", out)
	broker.WaitFor(t, "broker forwarding", 10*time.Second)
	x := newXPUB(t)
	if err := x.Connect(in); err != nil {
		t.Fatal(err)
	}
	runZMQFleet(t, be, out, x)

	broker.Signal(syscall.SIGTERM)
	if !broker.Wait(10 * time.Second) {
		t.Fatal("broker did not stop on SIGTERM")
	}
	if code := broker.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("broker exit code %d\n%s", code, broker.Output())
	}
}

// TestE2EScaleNATS: three instances subscribe on one NATS server; the
// publisher sends a publish-API JSON item to tack.<channel>.
func TestE2EScaleNATS(t *testing.T) {
	be := scaleBackend(t)
	srv := testutil.NATSServer(t, 0)
	inst := startInstances(t, be, map[string]string{"push_in_nats_url": srv.ClientURL()})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub := func(channel, content string) {
		t.Helper()
		if err := nc.Publish("tack."+channel, []byte(streamItem(channel, content))); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	f := openFleet(t, inst, pub)
	// Every instance subscribed to the shared channel and its probe's.
	subs := map[string]int{}
	for _, s := range testutil.NATSSubjects(t, srv) {
		subs[s]++
	}
	if subs["tack."+scaleChannel] != scaleInstances {
		t.Fatalf("nats subscriptions %v, want %d on tack.%s", subs, scaleInstances, scaleChannel)
	}
	f.run(t, pub)
	// The killed instance's subscriptions went with it.
	testutil.Eventually(t, 10*time.Second, func() error {
		n := 0
		for _, s := range testutil.NATSSubjects(t, srv) {
			if s == "tack."+scaleChannel {
				n++
			}
		}
		if n != scaleInstances-1 {
			return fmt.Errorf("%d subscriptions on tack.%s, want %d", n, scaleChannel, scaleInstances-1)
		}
		return nil
	})
}
