package rpc

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
)

// UnmarshalParams decodes a params object into v, a pointer to a struct
// with json tags. Absent params decode as {}. Member names match exactly,
// as JSON member names are case-sensitive: encoding/json alone would take
// "Channel" for "channel", so members that match no field name exactly are
// dropped before decoding, and {"channel":"a","Channel":"b"} means "a".
func UnmarshalParams(params json.RawMessage, v any) *Error {
	if params == nil {
		params = json.RawMessage("{}")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(params, &members); err != nil {
		return Errorf(CodeInvalidParams, "invalid params: %v", err)
	}
	names := fieldNames(reflect.TypeOf(v).Elem())
	decoded := params
	if hasOtherMembers(members, names) {
		decoded = exactMembers(members, names)
	}
	if err := json.Unmarshal(decoded, v); err != nil {
		return paramsError(err)
	}
	return nil
}

// paramsError words a decoding error in JSON terms, without the Go struct
// and type names that encoding/json puts in its messages.
func paramsError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return Errorf(CodeInvalidParams, "invalid params: %q must be %s, got a JSON %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	}
	return Errorf(CodeInvalidParams, "invalid params: %v", err)
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice:
		return "an array"
	}
	return "another JSON type"
}

func hasOtherMembers(members map[string]json.RawMessage, names []string) bool {
	for key := range members {
		if !slices.Contains(names, key) {
			return true
		}
	}
	return false
}

// exactMembers rebuilds the params object from the members named exactly
// like a field. Values are copied byte for byte, without the HTML escaping
// that json.Marshal would add.
func exactMembers(members map[string]json.RawMessage, names []string) json.RawMessage {
	out := []byte{'{'}
	for _, name := range names {
		value, ok := members[name]
		if !ok {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = AppendString(out, name)
		out = append(out, ':')
		out = append(out, value...)
	}
	return append(out, '}')
}

// fieldNames returns the JSON names of a struct type's fields.
func fieldNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
