package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"

	"github.com/activitystore/activitystore"
	"github.com/activitystore/activitystore/client"
	"github.com/activitystore/activitystore/httpapi"
)

func Example() {
	// A server, as activitystore serve runs one.
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, _ := activitystore.Open(dir, nil)
	defer s.Close()
	srv := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer srv.Close()

	ctx := context.Background()
	c, err := client.New(srv.URL, nil)
	if err != nil {
		panic(err)
	}
	if _, err := c.Append(ctx,
		activitystore.Activity{Type: "user.login", UserID: "u-42", Module: "auth", Action: "login"},
		activitystore.Activity{Type: "model.deploy", UserID: "u-42", Module: "models", Action: "deploy"},
	); err != nil {
		panic(err)
	}
	page, err := c.Query().Users("u-42").Types("model.deploy").All(ctx)
	if err != nil {
		panic(err)
	}
	for _, a := range page.Activities {
		fmt.Println(a.Type, a.UserID)
	}
	n, _ := c.Query().Users("u-42").Count(ctx)
	fmt.Println(n, "activities")
	// Output:
	// model.deploy u-42
	// 2 activities
}
