package history

import (
	"encoding/json"
	"fmt"
)

// Payload is the data of every publish of the pubsub workload. It makes each
// publish unique and tells the checkers who sent it and in which order.
type Payload struct {
	// Process and Epoch identify the publisher's connection.
	Process int `json:"p"`
	Epoch   int `json:"e"`
	// Seq counts the connection's publishes from 1, per channel.
	Seq int64 `json:"s"`
	// Pad fills the payload up to the workload's message size.
	Pad string `json:"pad,omitempty"`
}

// ParsePayload decodes a publish's data. It fails on data that the pubsub
// workload cannot have sent, which the checkers report as corrupted.
func ParsePayload(data json.RawMessage) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(data, &p); err != nil {
		return Payload{}, fmt.Errorf("history: payload %.80q: %w", data, err)
	}
	if p.Seq < 1 || p.Epoch < 1 {
		return Payload{}, fmt.Errorf("history: payload %.80q: seq and epoch must be at least 1", data)
	}
	return p, nil
}
