// Command vcsim runs govmomi's vCenter simulator for vmfabric's tests, demo and benchmarks.
//
// It builds a VPX model with one cluster of N hosts (optionally renamed), K VMs, M physical
// NICs per host (vmnic0 on vSwitch0, the others on the DVS as a proxy switch), and answers
// QueryNetworkHint from a JSON hints file that is re-read on every call so that a test can
// rewire CDP/LLDP neighbours at run time. Credentials come from VCSIM_USERNAME and
// VCSIM_PASSWORD. POST /vmfabric/rename?host=OLD&name=NEW renames a host and
// /vmfabric/connection?host=H&state=connected|disconnected|notResponding sets its connection
// state (basic auth with the same credentials). -tls-cert FILE serves https (a self-signed certificate for 127.0.0.1,
// written to FILE as PEM). Line 1 of stdout is the service URL (no password). SIGTERM/SIGINT stop it.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // the vSphere Automation REST API (tags)
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// cdpHint and lldpHint are the hints file's per-NIC entries.
type cdpHint struct {
	DevID   string `json:"devId"`
	PortID  string `json:"portId"`
	Address string `json:"address"`
}

type lldpHint struct {
	ChassisID   string `json:"chassisId"`
	PortID      string `json:"portId"`
	SystemName  string `json:"systemName"`
	MgmtAddress string `json:"mgmtAddress"`
	PortDescr   string `json:"portDescription"`
}

type nicHint struct {
	CDP  *cdpHint  `json:"cdp"`
	LLDP *lldpHint `json:"lldp"`
}

// hintNetworkSystem overrides the simulator's QueryNetworkHint with the hints file.
type hintNetworkSystem struct {
	*simulator.HostNetworkSystem
	hintsFile string
}

func readHints(path string, host string) map[string]nicHint {
	out := map[string]nicHint{}
	if path == "" {
		return out
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	all := map[string]map[string]nicHint{}
	if err := json.Unmarshal(data, &all); err != nil {
		fmt.Fprintf(os.Stderr, "hints file %s: %v\n", path, err)
		return out
	}
	if h, ok := all[host]; ok {
		return h
	}
	return out
}

func hintInfo(device string, hint nicHint) types.PhysicalNicHintInfo {
	info := types.PhysicalNicHintInfo{Device: device}
	if hint.CDP != nil {
		info.ConnectedSwitchPort = &types.PhysicalNicCdpInfo{
			CdpVersion: 2, Ttl: 180, DevId: hint.CDP.DevID,
			PortId: hint.CDP.PortID, Address: hint.CDP.Address,
		}
	}
	if hint.LLDP != nil {
		params := []types.KeyAnyValue{}
		add := func(key, value string) {
			if value != "" {
				params = append(params, types.KeyAnyValue{Key: key, Value: value})
			}
		}
		add("System Name", hint.LLDP.SystemName)
		add("Management Address", hint.LLDP.MgmtAddress)
		add("Port Description", hint.LLDP.PortDescr)
		info.LldpInfo = &types.LinkLayerDiscoveryProtocolInfo{
			ChassisId: hint.LLDP.ChassisID, PortId: hint.LLDP.PortID,
			TimeToLive: 120, Parameter: params,
		}
	}
	return info
}

func wanted(devices []string, device string) bool {
	if len(devices) == 0 {
		return true
	}
	for _, d := range devices {
		if d == device {
			return true
		}
	}
	return false
}

func (s *hintNetworkSystem) QueryNetworkHint(req *types.QueryNetworkHint) soap.HasFault {
	host := s.Host.Name
	fmt.Fprintf(os.Stderr, "hint-query %s\n", host)
	hints := readHints(s.hintsFile, host)
	var info []types.PhysicalNicHintInfo
	for _, nic := range s.Host.Config.Network.Pnic {
		if wanted(req.Device, nic.Device) {
			info = append(info, hintInfo(nic.Device, hints[nic.Device]))
		}
	}
	return &methods.QueryNetworkHintBody{Res: &types.QueryNetworkHintResponse{Returnval: info}}
}

func hosts() []*simulator.HostSystem {
	var out []*simulator.HostSystem
	for _, e := range simulator.Map.All("HostSystem") {
		out = append(out, e.(*simulator.HostSystem))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func findDVS() *simulator.DistributedVirtualSwitch {
	for _, e := range simulator.Map.All("") {
		if d, ok := e.(*simulator.DistributedVirtualSwitch); ok {
			return d
		}
	}
	return nil
}

// addPnics gives the host n physical NICs: copies of vmnic0 with their own names and MACs.
func addPnics(h *simulator.HostSystem, n int, index int) {
	net := h.Config.Network
	base := net.Pnic[0]
	net.Pnic = nil
	for i := 0; i < n; i++ {
		nic := base
		nic.Device = fmt.Sprintf("vmnic%d", i)
		nic.Key = "key-vim.host.PhysicalNic-" + nic.Device
		nic.Mac = fmt.Sprintf("00:50:56:%02x:%02x:%02x", (index>>8)&0xff, index&0xff, i)
		net.Pnic = append(net.Pnic, nic)
	}
}

// addProxySwitch makes the host a member of the DVS with every pnic but vmnic0 as uplink.
func addProxySwitch(h *simulator.HostSystem, dvs *simulator.DistributedVirtualSwitch) {
	net := h.Config.Network
	backing := &types.DistributedVirtualSwitchHostMemberPnicBacking{}
	ps := types.HostProxySwitch{
		DvsUuid: dvs.Uuid, DvsName: dvs.Name, Key: dvs.Uuid,
		NumPorts: 512, NumPortsAvailable: 500, Mtu: 1500,
	}
	for i, nic := range net.Pnic {
		if i == 0 {
			continue
		}
		ps.Pnic = append(ps.Pnic, nic.Key)
		ps.UplinkPort = append(ps.UplinkPort, types.KeyValue{
			Key: fmt.Sprintf("%d", i), Value: fmt.Sprintf("uplink%d", i),
		})
		backing.PnicSpec = append(backing.PnicSpec, types.DistributedVirtualSwitchHostMemberPnicSpec{
			PnicDevice: nic.Device, UplinkPortKey: fmt.Sprintf("%d", i),
		})
	}
	ps.Spec.Backing = backing
	net.ProxySwitch = []types.HostProxySwitch{ps}
}

// markUplinkPortgroup lists the DVS's uplink port group in config.uplinkPortgroup, as
// vCenter does (the simulator creates it but does not list it).
func markUplinkPortgroup(dvs *simulator.DistributedVirtualSwitch) {
	for _, ref := range dvs.Portgroup {
		pg := simulator.Map.Get(ref).(*simulator.DistributedVirtualPortgroup)
		if strings.Contains(pg.Name, "-DVUplinks") {
			pg.Config.Uplink = types.NewBool(true)
			info := dvs.Config.GetDVSConfigInfo()
			info.UplinkPortgroup = append(info.UplinkPortgroup, ref)
		}
	}
}

func configureHosts(names []string, nics int, hintsFile string) {
	dvs := findDVS()
	if dvs != nil {
		markUplinkPortgroup(dvs)
	}
	for i, h := range hosts() {
		if i < len(names) && names[i] != "" {
			h.Name = names[i]
			h.Summary.Config.Name = names[i]
		}
		addPnics(h, nics, i)
		if dvs != nil {
			addProxySwitch(h, dvs)
		}
		ns := simulator.Map.Get(*h.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
		simulator.Map.Put(&hintNetworkSystem{HostNetworkSystem: ns, hintsFile: hintsFile})
	}
}

// hostHandler serves the harness's host controls (basic auth with the vCenter credentials):
// POST /vmfabric/rename?host=OLD&name=NEW and /vmfabric/connection?host=H&state=S. The
// simulator has no HostSystem.Rename_Task nor Disconnect/ReconnectHost_Task, and wrapping
// HostSystem would break the simulator's own type assertions.
func hostHandler(user, pass string, change func(r *http.Request) []types.PropertyChange) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			http.Error(w, "login failed", http.StatusUnauthorized)
			return
		}
		name := r.URL.Query().Get("host")
		changes := change(r)
		if changes == nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		for _, h := range hosts() {
			if h.Name == name {
				simulator.Map.WithLock(h, func() { simulator.Map.Update(h, changes) })
				h.Summary.Config.Name = h.Name
				fmt.Fprintf(w, "host %s changed\n", name)
				return
			}
		}
		http.Error(w, "no host named "+name, http.StatusNotFound)
	}
}

func renameChange(r *http.Request) []types.PropertyChange {
	name := r.URL.Query().Get("name")
	if name == "" {
		return nil
	}
	return []types.PropertyChange{{Name: "name", Val: name}}
}

func connectionChange(r *http.Request) []types.PropertyChange {
	state := types.HostSystemConnectionState(r.URL.Query().Get("state"))
	switch state {
	case types.HostSystemConnectionStateConnected, types.HostSystemConnectionStateDisconnected,
		types.HostSystemConnectionStateNotResponding:
		return []types.PropertyChange{{Name: "runtime.connectionState", Val: state}}
	}
	return nil
}

// selfSigned makes a P-256 certificate for 127.0.0.1 and localhost, its own CA (the
// simulator's built-in certificate has a 1024-bit key that OpenSSL refuses as too weak).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vcsim", Organization: []string{"vmfabric tests"}},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func splitNames(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(text, ",")
}

func run() error {
	nHosts := flag.Int("host-count", 0, "number of cluster hosts (default: number of -hosts names, else 3)")
	nVMs := flag.Int("vms", 2, "number of VMs in the cluster")
	hostNames := flag.String("hosts", "", "comma-separated names for the hosts (hv1,hv2,...)")
	nics := flag.Int("nics", 2, "physical NICs per host (at least 2)")
	hintsFile := flag.String("hints", "", "JSON hints file, re-read on every QueryNetworkHint")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	tlsCert := flag.String("tls-cert", "", "serve https and write the server certificate (PEM) here")
	flag.Parse()

	names := splitNames(*hostNames)
	if len(names) > *nHosts {
		*nHosts = len(names)
	}
	if *nHosts == 0 {
		*nHosts = 3
	}
	if *nics < 2 {
		return fmt.Errorf("-nics must be at least 2")
	}
	user := os.Getenv("VCSIM_USERNAME")
	pass := os.Getenv("VCSIM_PASSWORD")
	if user == "" || pass == "" {
		return fmt.Errorf("VCSIM_USERNAME and VCSIM_PASSWORD must be set")
	}

	m := simulator.VPX()
	m.Host = 0
	m.ClusterHost = *nHosts
	m.Machine = *nVMs
	defer m.Remove()
	if err := m.Create(); err != nil {
		return err
	}
	configureHosts(names, *nics, *hintsFile)

	m.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(user, pass)}
	m.Service.RegisterEndpoints = true // the tagging REST API at /rest
	m.Service.HandleFunc("/vmfabric/rename", hostHandler(user, pass, renameChange))
	m.Service.HandleFunc("/vmfabric/connection", hostHandler(user, pass, connectionChange))
	if *tlsCert != "" {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	s := m.Service.NewServer()
	defer s.Close()
	if *tlsCert != "" {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}
		if err := os.WriteFile(*tlsCert, pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}

	public := *s.URL
	public.User = nil
	fmt.Println(public.String())
	os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: %v\n", err)
		os.Exit(1)
	}
}

var _ mo.Reference = (*hintNetworkSystem)(nil)
