package procfs

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// Lines of a real /proc/net/tcp and /proc/net/tcp6 (amd64, kernel 6.x),
// taken while uid 1500003 listened on 127.0.0.1, 0.0.0.0, ::1, [::] and
// ::ffff:127.0.0.1 and held one connection.
const (
	tcpHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     "
	tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"

	listenAnyRoot  = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1213 1 0000000074957f1e 100 0 0 10 0                      "
	listenAny      = "   2: 00000000:820D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1500003        0 552272 1 0000000025a5cee9 100 0 0 10 0                  "
	listenLoopback = "   3: 0100007F:D3AD 00000000:0000 0A 00000000:00000001 00:00000000 00000000 1500003        0 552271 2 000000002b1112cb 100 0 0 10 0                  "
	timeWait       = "   4: 0100007F:9459 0100007F:817A 06 00000000:00000000 03:0000109C 00000000     0        0 0 3 000000004b0fc0ea                                      "
	established    = "  89: 0100007F:B710 0100007F:D3AD 01 00000000:00000000 00:00000000 00000000 1500003        0 552276 2 00000000ee4a193f 20 0 0 10 -1                  "

	listen6Loopback = "   0: 00000000000000000000000001000000:C78D 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 1500003        0 552274 1 00000000d33fdeac 100 0 0 10 0"
	listen6Mapped   = "   1: 0000000000000000FFFF00000100007F:C6C1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 1500003        0 552275 1 00000000ced9fced 100 0 0 10 0"
	listen6Any      = "   2: 00000000000000000000000000000000:A779 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 1500003        0 552273 1 000000000404e2d1 100 0 0 10 0"
)

func TestParseListeners(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the fixtures are from a little-endian machine; the kernel prints addresses in host byte order")
	}
	lines := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		table   string
		want    []Listener
		wantErr bool
	}{
		{name: "ipv4: listeners only, header skipped", table: lines(tcpHeader, listenAnyRoot, listenAny, listenLoopback, timeWait, established), want: []Listener{
			{Addr: ap("0.0.0.0:2024"), UID: 0, Inode: 1213},
			{Addr: ap("0.0.0.0:33293"), UID: 1500003, Inode: 552272},
			{Addr: ap("127.0.0.1:54189"), UID: 1500003, Inode: 552271},
		}},
		{name: "ipv6", table: lines(tcp6Header, listen6Loopback, listen6Mapped, listen6Any), want: []Listener{
			{Addr: ap("[::1]:51085"), UID: 1500003, Inode: 552274},
			{Addr: ap("[::ffff:127.0.0.1]:50881"), UID: 1500003, Inode: 552275},
			{Addr: ap("[::]:42873"), UID: 1500003, Inode: 552273},
		}},
		{name: "header only", table: lines(tcpHeader)},
		{name: "empty", table: ""},
		{name: "no listener", table: lines(tcpHeader, timeWait, established)},
		{name: "truncated line", table: lines(tcpHeader, "   2: 00000000:820D 00000000:0000 0A 00000000:00000000"), wantErr: true},
		{name: "bad address", table: lines(tcpHeader, strings.Replace(listenAny, "00000000:820D", "0000000:820D", 1)), wantErr: true},
		{name: "bad port", table: lines(tcpHeader, strings.Replace(listenAny, "00000000:820D", "00000000:82G", 1)), wantErr: true},
		{name: "bad uid", table: lines(tcpHeader, strings.Replace(listenAny, "1500003", "-1", 1)), wantErr: true},
		{name: "bad inode", table: lines(tcpHeader, strings.Replace(listenAny, "552272", "x", 1)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseListeners(strings.NewReader(tt.table))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseListeners error = %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseListeners =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

// TestListeners finds a listener of this process, with its uid, in the
// real tables.
func TestListeners(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			l, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s loopback here: %v", network, err)
			}
			defer l.Close()
			want := l.Addr().(*net.TCPAddr).AddrPort()
			ls, err := Listeners()
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(ls, func(x Listener) bool { return x.Addr == want })
			if i < 0 {
				t.Fatalf("%v not among the listeners %v", want, ls)
			}
			if ls[i].UID != uint32(os.Geteuid()) || ls[i].Inode == 0 {
				t.Fatalf("listener %+v: want uid %d and an inode", ls[i], os.Geteuid())
			}
		})
	}
}

func FuzzParseListeners(f *testing.F) {
	f.Add(tcpHeader + "\n" + listenLoopback + "\n" + established + "\n")
	f.Add(tcp6Header + "\n" + listen6Mapped + "\n")
	f.Fuzz(func(t *testing.T, table string) {
		ls, err := ParseListeners(strings.NewReader(table))
		if err != nil && ls != nil {
			t.Fatalf("listeners %v with error %v", ls, err)
		}
		for _, l := range ls {
			if !l.Addr.IsValid() {
				t.Fatalf("invalid address in %+v", l)
			}
		}
	})
}
