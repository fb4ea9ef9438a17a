package qdranttest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// GRPCCalls returns how many calls of the gRPC method (such as
// "/qdrant.Points/QueryBatch") the node has answered, from its telemetry.
func (n *Node) GRPCCalls(t testing.TB, method string) int {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(n.HTTPURL() + "/telemetry?details_level=1")
	if err != nil {
		t.Fatalf("qdranttest: telemetry: %v", err)
	}
	defer resp.Body.Close()
	var tel struct {
		Result struct {
			Requests struct {
				GRPC struct {
					Responses map[string]struct {
						Count int `json:"count"`
					} `json:"responses"`
				} `json:"grpc"`
			} `json:"requests"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tel); err != nil {
		t.Fatalf("qdranttest: telemetry: %v", err)
	}
	return tel.Result.Requests.GRPC.Responses[method].Count
}
