package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/httpapi"
)

// Example posts an activity and reads it back by its ID.
func Example() {
	dir, err := os.MkdirTemp("", "httpapi-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	s, err := activitystore.Open(dir, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	srv := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/v1/activities", "application/json", strings.NewReader(
		`{"type":"model.deploy","user_id":"u-42","module":"models","action":"deploy",
		  "resource":"model/7","details":{"replicas":2},"time":"2025-01-02T15:04:05Z"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var created struct {
		IDs []string `json:"ids"`
	}
	err = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, len(created.IDs))

	resp, err = http.Get(srv.URL + "/v1/activities/" + created.IDs[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	var a activitystore.Activity
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, a.Type, a.UserID, a.Resource, string(a.Details), a.Time.Format(time.RFC3339))
	// Output:
	// 201 Created 1
	// 200 OK model.deploy u-42 model/7 {"replicas":2} 2025-01-02T15:04:05Z
}
