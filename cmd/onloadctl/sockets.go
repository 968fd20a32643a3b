package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/shm"
)

// tcpStates are Linux's TCP_* states as ss names them.
var tcpStates = [...]string{1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
	6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING"}

// stateFilters are the state names `ss state NAME` takes, and ss's groups.
var stateFilters = map[string][]uint8{
	"established": {1}, "syn-sent": {2}, "syn-recv": {3}, "fin-wait-1": {4}, "fin-wait-2": {5},
	"time-wait": {6}, "closed": {7}, "unconnected": {7}, "close-wait": {8}, "last-ack": {9},
	"listening": {10}, "listen": {10}, "closing": {11},
	"connected":    {1, 2, 3, 4, 5, 6, 8, 9, 11},
	"synchronized": {1, 3, 4, 5, 6, 8, 9, 11},
	"bucket":       {3, 6},
	"big":          {1, 2, 4, 5, 7, 8, 9, 10, 11},
}

// tcp_info's option bits (TCPI_OPT_*, include/uapi/linux/tcp.h)
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4
)

// socketView is one socket as onloadctl sockets shows it.
type socketView struct {
	Pid     int       `json:"pid"`
	Comm    string    `json:"comm"`
	Fd      int       `json:"fd"` // -1: no fd (closed by the program, or not yet accepted)
	Proto   string    `json:"proto"`
	State   string    `json:"state"`
	Local   string    `json:"local"`
	Remote  string    `json:"remote"`
	RecvQ   uint32    `json:"recv_q"`
	SendQ   uint32    `json:"send_q"`
	Path    string    `json:"path"`             // "ustack": the user-space stack carries it; "kernel": handed over
	Reason  string    `json:"reason,omitempty"` // why it is the kernel's
	Orphan  bool      `json:"orphan,omitempty"` // closed by the program, finished by the stack
	Shared  bool      `json:"shared,omitempty"` // a listener whose port other processes share
	Pending uint32    `json:"pending,omitempty"`
	Updated time.Time `json:"updated"` // when the stack wrote this entry
	TCP     *tcpView  `json:"tcp,omitempty"`
	UDP     *udpView  `json:"udp,omitempty"`

	state uint8
	lport uint16
	rport uint16
}

// tcpView is the socket's struct tcp_info, in tcp_info's units (microseconds, segments, bytes).
type tcpView struct {
	CC            string   `json:"cc,omitempty"`
	CAState       uint8    `json:"ca_state"`
	Options       []string `json:"options"`
	RTOUs         uint32   `json:"rto_us"`
	ATOUs         uint32   `json:"ato_us"`
	SndMSS        uint32   `json:"snd_mss"`
	RcvMSS        uint32   `json:"rcv_mss"`
	PMTU          uint32   `json:"pmtu"`
	SRTTUs        uint32   `json:"srtt_us"`
	RTTVarUs      uint32   `json:"rttvar_us"`
	MinRTTUs      uint32   `json:"min_rtt_us"`
	Cwnd          uint32   `json:"cwnd"`
	Ssthresh      uint32   `json:"ssthresh"`
	Unacked       uint32   `json:"unacked"`
	Sacked        uint32   `json:"sacked"`
	Lost          uint32   `json:"lost"`
	Retrans       uint32   `json:"retrans"`
	Retransmits   uint8    `json:"retransmits"`
	Backoff       uint8    `json:"backoff"`
	TotalRetrans  uint32   `json:"total_retrans"`
	BytesSent     uint64   `json:"bytes_sent"`
	BytesRetrans  uint64   `json:"bytes_retrans"`
	BytesAcked    uint64   `json:"bytes_acked"`
	BytesReceived uint64   `json:"bytes_received"`
	SegsOut       uint32   `json:"segs_out"`
	SegsIn        uint32   `json:"segs_in"`
	DataSegsOut   uint32   `json:"data_segs_out"`
	DataSegsIn    uint32   `json:"data_segs_in"`
	NotsentBytes  uint32   `json:"notsent_bytes"`
	Delivered     uint32   `json:"delivered"`
	SndWnd        uint32   `json:"snd_wnd"`
	RcvWnd        uint32   `json:"rcv_wnd"`
	RcvSpace      uint32   `json:"rcv_space"`
	LastSendMs    uint32   `json:"lastsnd_ms"`
	LastRecvMs    uint32   `json:"lastrcv_ms"`
	LastAckMs     uint32   `json:"lastack_ms"`
}

type udpView struct {
	DatagramsIn  uint64 `json:"datagrams_in"`
	DatagramsOut uint64 `json:"datagrams_out"`
}

// sockFilter is what `onloadctl sockets` is asked to show.
type sockFilter struct {
	tcp, udp bool // neither: both
	listen   bool // -l: listeners only
	states   map[uint8]bool
	sport    int // -1: any
	dport    int
}

func (f *sockFilter) match(v *socketView) bool {
	if f.tcp != f.udp && (v.Proto == "tcp") != f.tcp {
		return false
	}
	if f.listen && v.state != 10 {
		return false
	}
	if f.states != nil && !f.states[v.state] {
		return false
	}
	if f.sport >= 0 && int(v.lport) != f.sport || f.dport >= 0 && int(v.rport) != f.dport {
		return false
	}
	return true
}

// parseSockFilter reads ss's filter words: `state NAME` (repeatable), `sport = :N`, `dport = :N`
// (also `sport :N`, `sport eq :N`, `sport N`).
func parseSockFilter(words []string, f *sockFilter) error {
	f.sport, f.dport = -1, -1
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch w {
		case "state":
			if i+1 >= len(words) {
				return errors.New("state: name missing")
			}
			i++
			states, ok := stateFilters[strings.ToLower(words[i])]
			if !ok {
				return fmt.Errorf("unknown state %q", words[i])
			}
			if f.states == nil {
				f.states = map[uint8]bool{}
			}
			for _, s := range states {
				f.states[s] = true
			}
		case "sport", "dport":
			i++
			if i < len(words) && (words[i] == "=" || words[i] == "==" || words[i] == "eq") {
				i++
			}
			if i >= len(words) {
				return fmt.Errorf("%s: port missing", w)
			}
			p, err := strconv.ParseUint(strings.TrimPrefix(words[i], ":"), 10, 16)
			if err != nil {
				return fmt.Errorf("%s: bad port %q", w, words[i])
			}
			if w == "sport" {
				f.sport = int(p)
			} else {
				f.dport = int(p)
			}
		case "and", "&&":
		default:
			return fmt.Errorf("unknown filter word %q", w)
		}
	}
	return nil
}

func cmdSockets(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (an array of sockets)")
	pid := fs.Int("pid", 0, "show only this process's sockets")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	var f sockFilter
	fs.BoolVar(&f.tcp, "t", false, "TCP sockets")
	fs.BoolVar(&f.udp, "u", false, "UDP sockets")
	fs.BoolVar(&f.listen, "l", false, "listening sockets only")
	// ss's flags that change nothing here: numeric, all, process, info are what this shows
	for _, n := range []string{"n", "a", "p", "i", "e"} {
		fs.Bool(n, false, "accepted for ss compatibility (always on)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := parseSockFilter(fs.Args(), &f); err != nil {
		fmt.Fprintf(stderr, "onloadctl sockets: %v\n", err)
		return 2
	}
	dir := statsDir(*dirFlag)
	var paths []string
	if *pid != 0 {
		paths = []string{shm.SockTablePath(dir, *pid)}
	} else {
		var err error
		if paths, err = shm.ListSockTables(dir); err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
	}
	views := []socketView{}
	for _, p := range paths {
		snap, err := shm.ReadSockTable(p)
		if err != nil {
			if *pid != 0 {
				fmt.Fprintf(stderr, "onloadctl: %v\n", err)
				return 1
			}
			if !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(stderr, "onloadctl: skipping %v\n", err)
			}
			continue
		}
		if !snap.Alive && *pid == 0 {
			if snap.Gone {
				removeLeftovers(dir, snap.Pid)
			}
			continue
		}
		comm := commOf(snap.Pid)
		if snap.Unlisted > 0 {
			fmt.Fprintf(stderr, "onloadctl: process %d: %d sockets not listed (the table is full)\n", snap.Pid, snap.Unlisted)
		}
		for i := range snap.Sockets {
			v := viewOf(snap.Pid, comm, &snap.Sockets[i])
			if f.match(&v) {
				views = append(views, v)
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(views); err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
		return 0
	}
	writeSockets(stdout, views)
	return 0
}

// removeLeftovers removes what a process that is gone (killed) left in dir besides its stats
// segment: its socket table and capture rings.
func removeLeftovers(dir string, pid int) {
	_ = os.Remove(shm.SockTablePath(dir, pid))
	rings, _ := filepath.Glob(filepath.Join(dir, shm.CaptureFilePrefix+strconv.Itoa(pid)+".*"))
	for _, r := range rings {
		_ = os.Remove(r)
	}
}

func commOf(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func addrPort(a [16]byte, port uint16) string {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port).String()
}

func viewOf(pid int, comm string, r *shm.SockRecord) socketView {
	v := socketView{Pid: pid, Comm: comm, Fd: int(r.Fd), RecvQ: r.RecvQ, SendQ: r.SendQ, Path: "ustack",
		Updated: time.Unix(0, r.Written), state: r.State, lport: r.LPort, rport: r.RPort}
	v.Proto = "tcp"
	if r.Proto == unix.IPPROTO_UDP {
		v.Proto = "udp"
	}
	if int(r.State) < len(tcpStates) && tcpStates[r.State] != "" {
		v.State = tcpStates[r.State]
	} else {
		v.State = strconv.Itoa(int(r.State))
	}
	v.Local = addrPort(r.LAddr, r.LPort)
	v.Remote = "*:*"
	if r.RPort != 0 {
		v.Remote = addrPort(r.RAddr, r.RPort)
	}
	if r.Flags&shm.SockFlagKernel != 0 {
		v.Path, v.Reason = "kernel", shm.SockReasonName(r.Reason)
	}
	v.Orphan = r.Flags&shm.SockFlagOrphan != 0
	v.Shared = r.Flags&shm.SockFlagShared != 0
	if r.Flags&shm.SockFlagListen != 0 {
		v.Pending = r.Pending
	}
	switch {
	case v.Proto == "udp" && r.Flags&shm.SockFlagKernel == 0:
		v.UDP = &udpView{DatagramsIn: r.In, DatagramsOut: r.Out}
	case len(r.TCPInfo) > 0:
		v.TCP = tcpViewOf(r.TCPInfo, r.CC)
	}
	return v
}

func tcpViewOf(b []byte, cc string) *tcpView {
	var i unix.TCPInfo
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&i)), unsafe.Sizeof(i)), b)
	t := &tcpView{CC: cc, CAState: i.Ca_state, RTOUs: i.Rto, ATOUs: i.Ato, SndMSS: i.Snd_mss, RcvMSS: i.Rcv_mss,
		PMTU: i.Pmtu, SRTTUs: i.Rtt, RTTVarUs: i.Rttvar, MinRTTUs: i.Min_rtt, Cwnd: i.Snd_cwnd,
		Ssthresh: i.Snd_ssthresh, Unacked: i.Unacked, Sacked: i.Sacked, Lost: i.Lost, Retrans: i.Retrans,
		Retransmits: i.Retransmits, Backoff: i.Backoff, TotalRetrans: i.Total_retrans,
		BytesSent: i.Bytes_sent, BytesRetrans: i.Bytes_retrans, BytesAcked: i.Bytes_acked,
		BytesReceived: i.Bytes_received, SegsOut: i.Segs_out, SegsIn: i.Segs_in, DataSegsOut: i.Data_segs_out,
		DataSegsIn: i.Data_segs_in, NotsentBytes: i.Notsent_bytes, Delivered: i.Delivered, SndWnd: i.Snd_wnd,
		RcvWnd: i.Rcv_wnd, RcvSpace: i.Rcv_space, LastSendMs: i.Last_data_sent, LastRecvMs: i.Last_data_recv,
		LastAckMs: i.Last_ack_recv, Options: []string{}}
	if i.Options&tcpiOptTimestamps != 0 {
		t.Options = append(t.Options, "ts")
	}
	if i.Options&tcpiOptSACK != 0 {
		t.Options = append(t.Options, "sack")
	}
	if i.Options&tcpiOptWscale != 0 {
		t.Options = append(t.Options, "wscale")
	}
	return t
}

// writeSockets prints the sockets as ss -tuanpi does: a line per socket, then its details.
func writeSockets(w io.Writer, views []socketView) {
	const line = "%-5s %-10s %6v %6v %-21s %-21s %s %s\n"
	fmt.Fprintf(w, line, "Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Process", "Path")
	for _, v := range views {
		path := v.Path
		if v.Reason != "" {
			path += "(" + v.Reason + ")"
		}
		if v.Orphan {
			path += " orphan"
		}
		if v.Shared {
			path += " shared"
		}
		fmt.Fprintf(w, line, v.Proto, v.State, v.RecvQ, v.SendQ, v.Local, v.Remote,
			fmt.Sprintf("users:((%q,pid=%d,fd=%d))", v.Comm, v.Pid, v.Fd), path)
		if t := v.TCP; t != nil {
			opts := strings.Join(t.Options, " ")
			if opts != "" {
				opts += " "
			}
			fmt.Fprintf(w, "\t %s%s rto:%g rtt:%g/%g mss:%d pmtu:%d cwnd:%d%s bytes_sent:%d bytes_retrans:%d "+
				"bytes_acked:%d bytes_received:%d segs_out:%d segs_in:%d data_segs_out:%d data_segs_in:%d "+
				"lastsnd:%d lastrcv:%d lastack:%d unacked:%d retrans:%d/%d lost:%d sacked:%d notsent:%d "+
				"snd_wnd:%d rcv_wnd:%d\n",
				opts, t.CC, ms(t.RTOUs), ms(t.SRTTUs), ms(t.RTTVarUs), t.SndMSS, t.PMTU, t.Cwnd, ssthresh(t.Ssthresh),
				t.BytesSent, t.BytesRetrans, t.BytesAcked, t.BytesReceived, t.SegsOut, t.SegsIn, t.DataSegsOut,
				t.DataSegsIn, t.LastSendMs, t.LastRecvMs, t.LastAckMs, t.Unacked, t.Retransmits, t.TotalRetrans,
				t.Lost, t.Sacked, t.NotsentBytes, t.SndWnd, t.RcvWnd)
		}
		if u := v.UDP; u != nil {
			fmt.Fprintf(w, "\t datagrams_in:%d datagrams_out:%d\n", u.DatagramsIn, u.DatagramsOut)
		}
		if v.Pending > 0 {
			fmt.Fprintf(w, "\t handshaking:%d\n", v.Pending)
		}
	}
}

func ms(us uint32) float64 { return float64(us) / 1000 }

func ssthresh(s uint32) string {
	if s >= 0x7fffffff {
		return ""
	}
	return " ssthresh:" + strconv.FormatUint(uint64(s), 10)
}
