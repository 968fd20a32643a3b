package shim

import (
	"fmt"
	"os"
	"strconv"

	"ustack/shim/profile"
)

// Config is ustack's configuration, read from USTACK_* environment variables (see README.md).
type Config struct {
	Disable        bool   // USTACK_DISABLE=1
	Iface          string // USTACK_IFACE; "" = interface of the default route, else the only non-loopback up one
	LogLevel       string // USTACK_LOG: debug, info, warn (default), error
	LogFile        string // USTACK_LOG_FILE; "" = stderr
	VerifyChecksum bool   // USTACK_CHECKSUM_VERIFY, default true
	XDPMode        string // USTACK_XDP_MODE: auto (default), native, generic
	StatsDir       string // USTACK_STATS_DIR, default /dev/shm
	SpinUs         int    // USTACK_SPIN_US, default 0
	RecvBuf        int    // USTACK_RCVBUF bytes per connection, 0 = stack default
	SendBuf        int    // USTACK_SNDBUF bytes per connection, 0 = stack default
	RecvBufMax     int    // USTACK_RCVBUF_MAX: autotuning limit, 0 = stack default
	SendBufMax     int    // USTACK_SNDBUF_MAX: autotuning limit, 0 = stack default
	ExitLingerMs   int    // USTACK_EXIT_LINGER_MS: how long exit waits for closed connections making no progress (default 5000)
	ExitLingerMax  int    // USTACK_EXIT_LINGER_MAX_MS: how long exit waits in all (default 120000)
	GroupSlots     int    // USTACK_GROUP_SLOTS: processes that can share the interface (default 16, at most 64)
	Onloadctl      string // USTACK_ONLOADCTL: the onloadctl that runs the group's keeper; "" = next to the library
	KeeperLog      string // USTACK_KEEPER_LOG: the keeper's log file; "" = none
	Profile        string // USTACK_PROFILE: the profile (package profile) whose settings are the defaults; "" = none
}

// ConfigFromEnv reads the USTACK_* variables. An unparsable value is an error naming it.
// USTACK_PROFILE names a profile whose settings serve as defaults: a variable set in the
// environment wins over the profile's value; an unknown profile is an error too.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	prof := getenv("USTACK_PROFILE")
	if prof != "" {
		p, err := profile.Lookup(prof)
		if err != nil {
			return Config{}, fmt.Errorf("USTACK_PROFILE: %w", err)
		}
		getenv = p.Getenv(getenv)
	}
	c := Config{
		Profile:        prof,
		Iface:          getenv("USTACK_IFACE"),
		LogLevel:       getenv("USTACK_LOG"),
		LogFile:        getenv("USTACK_LOG_FILE"),
		VerifyChecksum: true,
		XDPMode:        getenv("USTACK_XDP_MODE"),
		StatsDir:       getenv("USTACK_STATS_DIR"),
		Onloadctl:      getenv("USTACK_ONLOADCTL"),
		KeeperLog:      getenv("USTACK_KEEPER_LOG"),
	}
	var err error
	if c.Disable, err = envBool(getenv, "USTACK_DISABLE", false); err != nil {
		return c, err
	}
	if c.VerifyChecksum, err = envBool(getenv, "USTACK_CHECKSUM_VERIFY", true); err != nil {
		return c, err
	}
	if c.SpinUs, err = envInt(getenv, "USTACK_SPIN_US", 0); err != nil {
		return c, err
	}
	if c.RecvBuf, err = envInt(getenv, "USTACK_RCVBUF", 0); err != nil {
		return c, err
	}
	if c.SendBuf, err = envInt(getenv, "USTACK_SNDBUF", 0); err != nil {
		return c, err
	}
	if c.RecvBufMax, err = envInt(getenv, "USTACK_RCVBUF_MAX", 0); err != nil {
		return c, err
	}
	if c.SendBufMax, err = envInt(getenv, "USTACK_SNDBUF_MAX", 0); err != nil {
		return c, err
	}
	if c.ExitLingerMs, err = envInt(getenv, "USTACK_EXIT_LINGER_MS", 5000); err != nil {
		return c, err
	}
	if c.ExitLingerMax, err = envInt(getenv, "USTACK_EXIT_LINGER_MAX_MS", 120000); err != nil {
		return c, err
	}
	if c.GroupSlots, err = envInt(getenv, "USTACK_GROUP_SLOTS", 16); err != nil {
		return c, err
	}
	if c.GroupSlots < 1 || c.GroupSlots > 64 {
		return c, fmt.Errorf("USTACK_GROUP_SLOTS=%d: want 1 to 64", c.GroupSlots)
	}
	switch c.XDPMode {
	case "", "auto":
		c.XDPMode = ""
	case "native", "generic":
	default:
		return c, fmt.Errorf("USTACK_XDP_MODE=%q: want auto, native or generic", c.XDPMode)
	}
	if c.StatsDir == "" {
		c.StatsDir = "/dev/shm"
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	return c, nil
}

func envBool(getenv func(string) string, name string, def bool) (bool, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: want 0 or 1", name, v)
	}
	return b, nil
}

func envInt(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def, fmt.Errorf("%s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}
