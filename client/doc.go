// Package client is a Go client for a wscluster node: JSON-RPC 2.0 over
// WebSocket text frames at the node's /ws endpoint, with the subprotocol
// "wscluster.v1".
//
// A Client owns one WebSocket connection at a time. One reader goroutine
// matches responses to requests by id and feeds server notifications
// (messages and presence events) to the channel returned by
// [Client.Notifications]. Writes are serialized, so every method is safe for
// concurrent use.
//
// With [Options.Reconnect], a dropped connection is redialed with exponential
// backoff over the dial URL and [Options.FallbackURLs]. The client then
// subscribes again to every channel it was subscribed to, joins again every
// channel it had joined with the same member id and info, and emits a
// synthetic "reconnected" [Notification].
//
// The client checks no input that the server checks, so tests can send
// invalid channel names, raw JSON-RPC requests ([Client.Call],
// [Client.Notify]) and raw frames ([Client.WriteRaw]) and observe the
// server's reply.
//
// A minimal subscriber:
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/ws", client.Options{})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	if err := c.Subscribe(ctx, "news"); err != nil {
//		return err
//	}
//	for n := range c.Notifications() {
//		if n.Message != nil {
//			fmt.Println(n.Message.Channel, string(n.Message.Data))
//		}
//	}
package client
