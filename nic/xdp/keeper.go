package xdp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// The keeper is a small process (onloadctl keeper) that holds a group for its members: it
// creates the group when the first process on the queue asks for it, hands each joining
// process the group's descriptors and a slot, watches every member's process through a pidfd,
// and reclaims a dead member's frames and steering entries at once, without its help. It
// exits when the last member is gone, and the kernel then detaches the program and frees the
// UMEM with its descriptors.
//
// Processes find it by an abstract unix socket named after the interface and queue, which
// lives in the network namespace: no file, nothing to clean up after a crash. The keeper
// answers only processes of its own user (SO_PEERCRED) and of its own build; anyone else gets
// a one-line refusal and runs on the kernel.

// GroupAddr is the abstract socket address of the group of queue of interface ifidx.
func GroupAddr(ifidx, queue int) string { return fmt.Sprintf("@ustack-xsk/%d/%d", ifidx, queue) }

// Messages: a 4-byte verb, then its body.
const (
	msgJoin    = "JOIN" // member: build id
	msgOK      = "OK  " // keeper: slot, ring size, mode; the group's descriptors (or: done)
	msgNo      = "NO  " // keeper: why not, one line
	msgReady   = "REDY" // member: its socket
	msgLive    = "LIVE" // keeper: the slot is the member's
	msgStatus  = "STAT" // onloadctl: the group as JSON
	msgShare   = "SHAR" // member: steer key (20 bytes, prog.go): share the port (a listener with SO_REUSEPORT)
	msgUnshare = "UNSH" // member: steer key: no longer
)

const (
	keeperTimeout = 5 * time.Second  // for one message of a join
	keeperIdle    = 10 * time.Second // how long a keeper waits for its first member
	refuseLinger  = 200 * time.Millisecond
)

// ErrRefused is what Attach answers when the group will not take this process; the error says
// why in one line.
var ErrRefused = errors.New("refused by the interface's group")

// KeeperOptions configure RunKeeper.
type KeeperOptions struct {
	Ifname   string
	Queue    int
	Group    GroupOptions
	Log      func(format string, args ...any)
	Listener int // an already bound abstract socket (the keeper spawned by a member), or -1
}

// ErrKeeperExists is RunKeeper's answer when another keeper holds the group's address.
var ErrKeeperExists = errors.New("a keeper already serves the group")

type member struct {
	slot   uint32
	pid    int
	conn   int
	pidfd  int
	sockFd int
}

// RunKeeper creates the group and serves it until its last member is gone.
func RunKeeper(o KeeperOptions) error {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ifi, err := interfaceIndex(o.Ifname)
	if err != nil {
		return err
	}
	ls := o.Listener
	if ls < 0 {
		if ls, err = listenGroup(ifi, o.Queue); err != nil {
			return err
		}
	}
	defer unix.Close(ls)
	o.Group.UID = uint32(unix.Geteuid())
	var g *Group
	// a keeper that just left may still hold the interface's program for a moment
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g, err = CreateGroup(o.Ifname, o.Queue, o.Group)
		if err == nil || !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer g.Close()
	g.State.SetKeeper(os.Getpid())
	logf("keeper: group of %s queue %d: %d slots, %d frames (%s)", o.Ifname, o.Queue, o.Group.Geometry.Slots, o.Group.Geometry.Frames(), g.Mode)
	members := map[uint32]*member{}
	served := false
	for {
		pfds := []unix.PollFd{{Fd: int32(ls), Events: unix.POLLIN}}
		var order []*member
		for _, m := range members {
			pfds = append(pfds, unix.PollFd{Fd: int32(m.conn), Events: unix.POLLIN}, unix.PollFd{Fd: int32(m.pidfd), Events: unix.POLLIN})
			order = append(order, m)
		}
		timeout := -1
		switch {
		case len(members) == 0 && served:
			timeout = 0 // the last one left: serve who is already knocking, then go
		case !served:
			timeout = int(keeperIdle / time.Millisecond) // started for a process that never came
		}
		n, err := unix.Poll(pfds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("keeper: poll: %w", err)
		}
		if n == 0 {
			logf("keeper: no member left")
			return nil
		}
		for i, m := range order {
			c, p := pfds[1+2*i], pfds[2+2*i]
			if p.Revents != 0 || c.Revents&(unix.POLLHUP|unix.POLLERR) != 0 || (c.Revents&unix.POLLIN != 0 && !serveMember(g, m, logf)) {
				rx, tx, entries, err := g.Reclaim(Member{Slot: m.slot, Fd: m.sockFd})
				logf("keeper: pid %d (slot %d) is gone: %d receive and %d transmit frames and %d steering entries taken back (%v)",
					m.pid, m.slot, rx, tx, entries, err)
				g.State.SetSlot(m.slot, shm.SlotFree, 0, 0)
				unix.Close(m.conn)
				unix.Close(m.pidfd)
				delete(members, m.slot)
			}
		}
		if pfds[0].Revents&unix.POLLIN != 0 {
			conn, _, err := unix.Accept4(ls, unix.SOCK_CLOEXEC)
			if err != nil {
				continue
			}
			if m := admit(g, conn, logf); m != nil {
				members[m.slot] = m
				served = true
			}
		}
	}
}

// serveMember answers a live member's request; false means its connection is gone.
func serveMember(g *Group, m *member, logf func(string, ...any)) bool {
	msg, fds, err := recvFds(m.conn, 1)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		return false
	}
	switch verb := string(msg[:min(len(msg), 4)]); verb {
	case msgStatus:
		sendStatus(g, m.conn)
	case msgShare, msgUnshare:
		var k steerKey
		if len(msg) < 4+len(k) {
			return false
		}
		copy(k[:], msg[4:])
		answer := []byte(msgOK)
		if err := g.share(k, m.slot, verb == msgShare); err != nil {
			answer = append([]byte(msgNo), err.Error()...)
		}
		_ = send(m.conn, answer, nil)
	}
	return true
}

// interfaceIndex is the index of interface name, as every lookup of this package makes it.
func interfaceIndex(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("xdp: looking up %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// ListenGroup binds the group's address: whoever binds it is the group's keeper.
func ListenGroup(ifname string, queue int) (int, error) {
	ifi, err := interfaceIndex(ifname)
	if err != nil {
		return -1, err
	}
	return listenGroup(ifi, queue)
}

func listenGroup(ifi, queue int) (int, error) {
	ls, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("keeper: socket: %w", err)
	}
	if err := unix.Bind(ls, &unix.SockaddrUnix{Name: GroupAddr(ifi, queue)}); err != nil {
		unix.Close(ls)
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, ErrKeeperExists
		}
		return -1, fmt.Errorf("keeper: bind: %w", err)
	}
	if err := unix.Listen(ls, 64); err != nil {
		unix.Close(ls)
		return -1, fmt.Errorf("keeper: listen: %w", err)
	}
	return ls, nil
}

// admit runs a newcomer's join (or status request) and returns the member, or nil.
func admit(g *Group, conn int, logf func(string, ...any)) *member {
	keep := false
	defer func() {
		if !keep {
			unix.Close(conn)
		}
	}()
	tv := unix.NsecToTimeval(keeperTimeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	cred, err := unix.GetsockoptUcred(conn, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil
	}
	refuse := func(format string, args ...any) *member {
		msg := fmt.Sprintf(format, args...)
		_ = send(conn, append([]byte(msgNo), msg...), nil)
		logf("keeper: refused pid %d (uid %d): %s", cred.Pid, cred.Uid, msg)
		// a unix socket closed with a message unread resets the connection, and the newcomer
		// would read that instead of the refusal: let it see the end, and read what it sent
		_ = unix.Shutdown(conn, unix.SHUT_WR)
		for {
			pfd := []unix.PollFd{{Fd: int32(conn), Events: unix.POLLIN}}
			if n, _ := unix.Poll(pfd, int(refuseLinger/time.Millisecond)); n <= 0 {
				return nil
			}
			_, fds, err := recvFds(conn, 1)
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				return nil
			}
		}
	}
	if cred.Uid != g.State.UID() {
		// nothing of the group may reach another user: not its frames, not its state; and
		// another user's process does not get to hold the keeper up beyond refuseLinger
		return refuse("the interface's queue is in use by another user's accelerated processes")
	}
	buf, fds, err := recvFds(conn, 1)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil || len(buf) < 4 {
		return nil
	}
	switch string(buf[:4]) {
	case msgStatus:
		sendStatus(g, conn)
		return nil
	case msgJoin:
	default:
		return nil
	}
	var build shm.BuildID
	copy(build[:], buf[4:])
	if _, err := shm.OpenGroupState(g.stateMem, build); err != nil {
		return refuse("another build of ustack holds the interface's queue; both must be the same build to share it")
	}
	slot, ok := g.State.FreeSlot()
	if !ok {
		return refuse("all %d slots of the interface's group are taken", g.State.Geometry().Slots)
	}
	pidfd, err := pidfdOpen(int(cred.Pid))
	if err != nil {
		return refuse("cannot watch the process: %v", err)
	}
	g.State.SetSlot(slot, shm.SlotJoining, int(cred.Pid), procStart(int(cred.Pid)))
	m := &member{slot: slot, pid: int(cred.Pid), conn: conn, pidfd: pidfd, sockFd: -1}
	fail := func() *member {
		g.Reclaim(Member{Slot: slot, Fd: m.sockFd})
		g.State.SetSlot(slot, shm.SlotFree, 0, 0)
		unix.Close(pidfd)
		return nil
	}
	var body bytes.Buffer
	body.WriteString(msgOK)
	binary.Write(&body, binary.LittleEndian, [2]uint32{slot, g.ringSize})
	body.WriteString(g.Mode)
	if err := send(conn, body.Bytes(), g.files.list()); err != nil {
		return fail()
	}
	msg, fds, err := recvFds(conn, 1)
	if err != nil || string(msg[:min(len(msg), 4)]) != msgReady || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		logf("keeper: pid %d did not join: %q %v", cred.Pid, msg, err)
		return fail()
	}
	m.sockFd = fds[0]
	g.State.SetSlot(slot, shm.SlotLive, m.pid, procStart(m.pid))
	// the member uses its slot only once it is told: a join that failed here must not leave a
	// process steering frames to a slot the keeper gave back
	if err := send(conn, []byte(msgLive), nil); err != nil {
		logf("keeper: pid %d did not join: %v", cred.Pid, err)
		return fail()
	}
	logf("keeper: pid %d joined as slot %d", m.pid, slot)
	keep = true
	return m
}

func pidfdOpen(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

func procStart(pid int) uint64 {
	st, _ := shm.ProcStartTime(pid)
	return st
}

// recvFds reads one message and up to max descriptors passed with it (close-on-exec).
func recvFds(conn, max int) ([]byte, []int, error) {
	buf := make([]byte, 64<<10) // a status of 64 members fits
	oob := make([]byte, unix.CmsgSpace(max*4))
	var n, oobn int
	var err error
	for {
		// the Go runtime's own signals interrupt a wait, and so do the host program's
		n, oobn, _, _, err = unix.Recvmsg(conn, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	if oobn > 0 {
		cms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, cm := range cms {
				if f, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, f...)
				}
			}
		}
	}
	if n == 0 {
		return nil, fds, errors.New("connection closed")
	}
	return buf[:n], fds, nil
}

// GroupStatus is the group as onloadctl shows it.
type GroupStatus struct {
	Ifname     string         `json:"ifname"`
	Queue      int            `json:"queue"`
	Mode       string         `json:"mode"`
	Keeper     int            `json:"keeper_pid"`
	Slots      uint32         `json:"slots"`
	Frames     uint32         `json:"frames"`
	RxFrames   uint32         `json:"rx_frames"`
	TxPerSlot  uint32         `json:"tx_frames_per_slot"`
	RxOnFill   uint32         `json:"rx_frames_kernel"` // on the fill ring, in the kernel, in RX rings
	FillRing   uint32         `json:"fill_ring"`
	Members    []MemberStatus `json:"members"`
	Unassigned struct {
		Steer  int `json:"steer_entries"`
		Flows  int `json:"flow_entries"`
		Shared int `json:"shared_ports"`
	} `json:"unassigned"`
}

// MemberStatus is one slot of the group.
type MemberStatus struct {
	Slot       uint32   `json:"slot"`
	Pid        uint32   `json:"pid"`
	State      string   `json:"state"`
	RxHeld     uint32   `json:"rx_frames_held"`
	TxFree     uint32   `json:"tx_frames_free"`
	TxInflight uint32   `json:"tx_frames_in_flight"`
	Steer      int      `json:"steer_entries"`
	Flows      int      `json:"flow_entries"`
	Shared     int      `json:"shared_ports"` // ports it listens on with others (SO_REUSEPORT)
	Ports      []string `json:"ports"`        // the ports it steers ("tcp/80", "tcp/80 (shared)"; IPv6: "tcp6/80")
}

func sendStatus(g *Group, conn int) {
	geo := g.State.Geometry()
	st := GroupStatus{Ifname: g.Ifname, Queue: g.Queue, Mode: g.Mode, Keeper: g.State.Keeper(), Slots: geo.Slots,
		Frames: geo.Frames(), RxFrames: geo.RxFrames, TxPerSlot: geo.TxPerSlot, FillRing: g.fill.Unconsumed()}
	c := g.State.Count()
	st.RxOnFill = c.RxFill
	steer, flows, shared, ports := g.Entries()
	names := []string{"free", "joining", "live"}
	for i := range geo.Slots {
		sl := g.State.Slot(i)
		if sl.State == shm.SlotFree && c.RxHeld[i] == 0 && c.TxFree[i] == geo.TxPerSlot && steer[i]+flows[i]+shared[i] == 0 {
			continue
		}
		st.Members = append(st.Members, MemberStatus{Slot: i, Pid: sl.Pid, State: names[min(sl.State, shm.SlotLive)],
			RxHeld: c.RxHeld[i], TxFree: c.TxFree[i], TxInflight: c.TxFlight[i], Steer: steer[i], Flows: flows[i], Shared: shared[i],
			Ports: ports[i]})
		delete(steer, i)
		delete(flows, i)
		delete(shared, i)
	}
	for _, n := range steer {
		st.Unassigned.Steer += n
	}
	for _, n := range flows {
		st.Unassigned.Flows += n
	}
	for _, n := range shared {
		st.Unassigned.Shared += n
	}
	b, _ := json.Marshal(st)
	_ = send(conn, b, nil)
}

// send writes one message, with descriptors if any, and never raises SIGPIPE in the program
// it runs in.
func send(conn int, msg []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(conn, msg, oob, nil, unix.MSG_NOSIGNAL)
}

// QueryGroup asks the keeper of queue of ifname (in this network namespace) for the group's
// status.
func QueryGroup(ifname string, queue int) (*GroupStatus, error) {
	ifi, err := interfaceIndex(ifname)
	if err != nil {
		return nil, err
	}
	conn, err := dialGroup(ifi, queue)
	if err != nil {
		return nil, err
	}
	defer unix.Close(conn)
	// a refusal may be waiting already, with the connection closed behind it
	_ = send(conn, []byte(msgStatus), nil)
	buf, _, err := recvFds(conn, 0)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(string(buf), msgNo) {
		return nil, fmt.Errorf("%w: %s", ErrRefused, buf[4:])
	}
	var st GroupStatus
	if err := json.Unmarshal(buf, &st); err != nil {
		return nil, fmt.Errorf("keeper's status: %w", err)
	}
	return &st, nil
}

func dialGroup(ifi, queue int) (int, error) {
	conn, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := unix.NsecToTimeval(keeperTimeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if err := unix.Connect(conn, &unix.SockaddrUnix{Name: GroupAddr(ifi, queue)}); err != nil {
		unix.Close(conn)
		return -1, err
	}
	return conn, nil
}

// AttachOptions configure Attach.
type AttachOptions struct {
	Build shm.BuildID
	Stats *Stats
	// Spawn starts a keeper for the group when none answers; it is called at most once.
	Spawn func() error
}

// Membership is a process's place in its group: the connection to the keeper, which the
// process keeps open for its life (the keeper learns of its death by the pidfd either way).
type Membership struct {
	conn int
}

// Close leaves the group: the keeper takes back what is left.
func (m *Membership) Close() error {
	if m == nil || m.conn < 0 {
		return nil
	}
	err := unix.Close(m.conn)
	m.conn = -1
	return err
}

// Attach joins the group of queue of ifname, starting its keeper if there is none, and returns
// this process's socket in it. It works in the calling thread's network namespace.
func Attach(ifname string, queue int, o AttachOptions) (*Socket, *Membership, error) {
	ifi, err := interfaceIndex(ifname)
	if err != nil {
		return nil, nil, err
	}
	spawned := false
	deadline := time.Now().Add(3 * time.Second)
	var conn int
	for {
		conn, err = dialGroup(ifi, queue)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINTR) || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("xdp: reaching the keeper of %s queue %d: %w", ifname, queue, err)
		}
		if !spawned && o.Spawn != nil {
			spawned = true
			if err := o.Spawn(); err != nil {
				return nil, nil, fmt.Errorf("xdp: starting a keeper for %s: %w", ifname, err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	mb := &Membership{conn: conn}
	fail := func(err error) (*Socket, *Membership, error) {
		mb.Close()
		return nil, nil, err
	}
	// a refusal may be waiting already, with the connection closed behind it
	_ = send(conn, append([]byte(msgJoin), o.Build[:]...), nil)
	msg, fds, err := recvFds(conn, 8)
	if err != nil {
		return fail(fmt.Errorf("xdp: joining the group of %s: %w", ifname, err))
	}
	if strings.HasPrefix(string(msg), msgNo) {
		return fail(fmt.Errorf("%w: %s", ErrRefused, msg[4:]))
	}
	files, err := groupFilesOf(fds)
	if err != nil || !strings.HasPrefix(string(msg), msgOK) || len(msg) < 12 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return fail(fmt.Errorf("xdp: joining the group of %s: unexpected answer %q", ifname, msg))
	}
	defer files.Close()
	slot := binary.LittleEndian.Uint32(msg[4:])
	ringSize := int(binary.LittleEndian.Uint32(msg[8:]))
	mode := string(msg[12:])
	var group *shm.GroupState
	dead := func(holder uint32) bool { return holderDead(group, holder) }
	bound := func(fd int) error {
		if err := send(conn, []byte(msgReady), []int{fd}); err != nil {
			return err
		}
		msg, _, err := recvFds(conn, 0)
		if err != nil || string(msg) != msgLive {
			return fmt.Errorf("the keeper did not confirm slot %d: %q %v", slot, msg, err)
		}
		return nil
	}
	s, err := JoinGroup(ifname, queue, slot, ringSize, files, o.Build, dead, bound, o.Stats)
	if err != nil {
		return fail(err)
	}
	group = s.group
	s.mode = mode + "/shared"
	s.request = func(msg []byte) ([]byte, error) {
		if err := send(conn, msg, nil); err != nil {
			return nil, err
		}
		answer, _, err := recvFds(conn, 0)
		return answer, err
	}
	return s, mb, nil
}

// holderDead reports whether the process that holds a group lock (slot + 1; the keeper's is
// Slots + 1) is gone.
func holderDead(g *shm.GroupState, holder uint32) bool {
	if g == nil || holder == 0 {
		return false
	}
	var pid int
	var start uint64
	if holder-1 >= g.Geometry().Slots {
		pid = g.Keeper()
	} else {
		sl := g.Slot(holder - 1)
		pid, start = int(sl.Pid), sl.Start
	}
	if pid <= 0 {
		return true
	}
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return true
	}
	return start != 0 && procStart(pid) != start
}
