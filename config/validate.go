package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNodeIDLength is the longest node id in bytes, which are all ASCII.
const maxNodeIDLength = 64

// errNodeID describes a valid node id.
var errNodeID = errors.New("want 1-64 characters of A-Z a-z 0-9 . _ -")

// checkNodeID returns errNodeID unless id is 1-64 characters of [A-Za-z0-9._-].
func checkNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLength {
		return errNodeID
	}

	for i := 0; i < len(id); i++ {
		if !isNodeIDByte(id[i]) {
			return errNodeID
		}
	}

	return nil
}

func isNodeIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	default:
		return c == '.' || c == '_' || c == '-'
	}
}

// listenAddrChecker returns a check for an address to listen on or dial, where
// the host may be empty (all interfaces) and port 0 picks a free port.
// The example appears in the error.
func listenAddrChecker(example string) func(string) error {
	want := fmt.Errorf("want host:port with a numeric port 0-65535, such as %s", example)

	return func(value string) error {
		if _, _, err := splitAddr(value, false, 0); err != nil {
			return want
		}

		return nil
	}
}

// errDialAddr describes a valid address of another node.
var errDialAddr = errors.New("want host:port with a non-empty host and a numeric port 1-65535, such as node1.example.com:5410")

// checkDialAddr returns errDialAddr unless value is host:port with a host and a port 1-65535.
func checkDialAddr(value string) error {
	if _, _, err := splitAddr(value, true, 1); err != nil {
		return errDialAddr
	}

	return nil
}

// errAddr is the internal cause of an invalid address; callers replace it with
// a description of what their flag allows.
var errAddr = errors.New("invalid host:port")

// splitAddr splits host:port and checks that the host is empty (unless
// needHost), an IP address or a DNS name, and that the port is a number from
// minPort to 65535. Service names such as "http" are not accepted as ports.
func splitAddr(value string, needHost bool, minPort uint64) (string, uint64, error) {
	host, portText, err := net.SplitHostPort(value)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", errAddr, err)
	}

	// Brackets mark an IPv6 literal, so "[name]:80" is rejected as a typo
	// instead of being dialed as the name.
	if strings.HasPrefix(value, "[") && !isIPv6(host) {
		return "", 0, errAddr
	}

	if host == "" && needHost || host != "" && !isHost(host) {
		return "", 0, errAddr
	}

	port, err := parsePort(portText)
	if err != nil || port < minPort {
		return "", 0, errAddr
	}

	return host, port, nil
}

// parsePort parses a decimal port 0-65535.
func parsePort(text string) (uint64, error) {
	if text == "" || strings.TrimLeft(text, "0123456789") != "" {
		return 0, errAddr
	}

	port, err := strconv.ParseUint(text, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errAddr, err)
	}

	return port, nil
}

func isIPv6(host string) bool {
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Is6()
}

// isHost reports whether host is an IP address or a syntactically valid DNS name.
func isHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}

	return isDNSName(host)
}

// isDNSName reports whether name is at most 253 bytes of labels of 1-63
// letters, digits, hyphens or underscores, with an optional trailing dot.
// Underscores are allowed because some resolvable container names contain
// them, such as project_service_1 of Docker Compose v1.
func isDNSName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}

	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}

		for i := 0; i < len(label); i++ {
			if !isLabelByte(label[i]) {
				return false
			}
		}
	}

	return true
}

func isLabelByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	default:
		return c == '-' || c == '_'
	}
}

// hasControl reports whether s contains a control character (Unicode category
// Cc, which includes DEL and the C1 range).
func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// errChannel describes a valid Redis channel name.
var errChannel = errors.New("want a non-empty UTF-8 name without control characters")

// checkChannel returns errChannel unless name is non-empty UTF-8 without control characters.
func checkChannel(name string) error {
	if name == "" || !utf8.ValidString(name) || hasControl(name) {
		return errChannel
	}

	return nil
}

// errControl describes a valid user name.
var errControl = errors.New("want a value without control characters")

// checkNoControl returns errControl when value contains a control character.
func checkNoControl(value string) error {
	if hasControl(value) {
		return errControl
	}

	return nil
}

// errSecret describes a valid secret without repeating it.
var errSecret = errors.New("want a secret without control characters; check for a trailing newline")

// checkSecret rejects control characters in a secret. A secret read from a
// file can end in a newline that other nodes' copies lack, and the mismatch
// would otherwise show only as failed authentication.
func checkSecret(value string) error {
	if hasControl(value) {
		return errSecret
	}

	return nil
}

// splitList splits a comma-separated list, trims spaces around each entry and
// drops empty entries, so "" and " , " are empty lists.
func splitList(value string) []string {
	var entries []string
	for entry := range strings.SplitSeq(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry != "" {
			entries = append(entries, entry)
		}
	}

	return entries
}

// errOrigin describes a valid entry of --allowed-origins.
var errOrigin = errors.New(`want "*" alone or a comma-separated list of origins scheme://host[:port] with scheme http or https and no path, query or user info, such as https://example.com`)

// parseOrigins parses the value of --allowed-origins. It returns nil for an
// empty list, []string{"*"} for a lone "*", and otherwise the normalized
// origins without duplicates.
func parseOrigins(value string) ([]string, error) {
	entries := splitList(value)
	if len(entries) == 1 && entries[0] == "*" {
		return []string{"*"}, nil
	}

	var origins []string
	for _, entry := range entries {
		origin, err := normalizeOrigin(entry)
		if err != nil {
			return nil, entryError(entries, entry, err)
		}

		origins = appendNew(origins, origin)
	}

	return origins, nil
}

// entryError names the invalid entry when a list has several entries, because
// the whole value then does not show which one is wrong.
func entryError(entries []string, entry string, err error) error {
	if len(entries) < 2 {
		return err
	}

	return fmt.Errorf("entry %q: %w", entry, err)
}

// appendNew appends item unless list already contains it.
func appendNew(list []string, item string) []string {
	for _, existing := range list {
		if existing == item {
			return list
		}
	}

	return append(list, item)
}

// normalizeOrigin returns origin as a browser sends it in the Origin header:
// scheme and host in lower case, and without the default port of the scheme.
func normalizeOrigin(origin string) (string, error) {
	u, err := url.Parse(origin)
	if err != nil {
		return "", errOrigin
	}

	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" || u.Opaque != "" || u.User != nil {
		return "", errOrigin
	}

	if u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(origin, "#") {
		return "", errOrigin
	}

	host, port, err := splitOriginHost(u)
	if err != nil {
		return "", err
	}

	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}

	if port == "" {
		return scheme + "://" + bracketIPv6(host), nil
	}

	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// splitOriginHost returns the lower-case host of an origin URL and its port,
// which is empty when the origin has none.
func splitOriginHost(u *url.URL) (string, string, error) {
	host := strings.ToLower(u.Hostname())
	if !isHost(host) || strings.HasPrefix(u.Host, "[") && !isIPv6(host) {
		return "", "", errOrigin
	}

	// url.Parse accepts "host:" with an empty port, which no browser sends.
	if strings.HasSuffix(u.Host, ":") {
		return "", "", errOrigin
	}

	if u.Port() == "" {
		return host, "", nil
	}

	port, err := parsePort(u.Port())
	if err != nil || port == 0 {
		return "", "", errOrigin
	}

	return host, strconv.FormatUint(port, 10), nil
}

// bracketIPv6 puts brackets around an IPv6 host, as URLs write it.
func bracketIPv6(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}

	return host
}
