// Package client talks to an activitystore server (activitystore serve, or
// httpapi in a Go service) with the same query builder as the library:
//
//	c, err := client.New("http://127.0.0.1:8080", &client.Options{Token: token})
//	page, err := c.Query().Types("model.deploy").Since(time.Now().Add(-24 * time.Hour)).All(ctx)
//	ids, err := c.Append(ctx, activitystore.Activity{Type: "user.login", UserID: "u-42"})
//
// Errors are the library's where they mean the same: errors.Is
// activitystore.ErrNotFound for a missing activity, a *activitystore.QueryError
// (errors.Is ErrInvalidQuery) naming the parameter of a bad query, a
// *activitystore.ValidationError naming the activity and field Append
// refused; ErrUnauthorized and ErrForbidden for the server's 401 and 403; a
// *StatusError for any other answer that is not a success.
//
// *Client and *activitystore.Store both satisfy activitystore.Activities, so
// a service can switch between an embedded store and a server in one line.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/activitystore/activitystore"
)

var (
	// ErrUnauthorized is wrapped by the error of a request the server
	// answered 401: no token, or one it does not know.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden is wrapped by the error of a request the server answered
	// 403: the principal may not read or write what it asked for.
	ErrForbidden = errors.New("client: forbidden")
)

// StatusError is an answer of the server that is not a success and has no
// more precise error: its status and the server's message.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("client: the server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Options configure a Client. The zero value (or nil) gives the defaults.
type Options struct {
	// Token is sent as "Authorization: Bearer TOKEN" when set.
	Token string
	// HTTPClient does the requests; the default is http.DefaultClient. Tail
	// streams outlive any Timeout it sets, so leave that zero and bound
	// requests with their context.
	HTTPClient *http.Client
}

// Client is a connection to one server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

var _ activitystore.Activities = (*Client)(nil)

// New returns a client of the server at baseURL (http or https, with an
// optional path prefix).
func New(baseURL string, opts *Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://HOST:PORT or https://HOST:PORT", baseURL)
	}
	c := &Client{base: u, hc: http.DefaultClient}
	if opts != nil {
		c.token = opts.Token
		if opts.HTTPClient != nil {
			c.hc = opts.HTTPClient
		}
	}
	return c, nil
}

// request builds a request of path with query parameters v and body.
func (c *Client) request(ctx context.Context, method, path string, v url.Values, body io.Reader) (*http.Request, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = v.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do sends the request and decodes a JSON answer into out, or returns the
// error of an answer that is not a success.
func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return answerError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: the server's answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field"`
	Index *int   `json:"index"`
}

// answerError returns the error of an answer that is not a success.
func answerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e errorBody
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	msg := strings.TrimPrefix(e.Error, "activitystore: ")
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrForbidden, msg)
	case resp.StatusCode == http.StatusNotFound && strings.Contains(e.Error, "not found"):
		return fmt.Errorf("%w: %s", activitystore.ErrNotFound, msg)
	case resp.StatusCode == http.StatusBadRequest && e.Index != nil:
		return &activitystore.ValidationError{Index: *e.Index, Field: e.Field, Reason: msg}
	case resp.StatusCode == http.StatusBadRequest && e.Field != "":
		return &activitystore.QueryError{Field: e.Field, Reason: msg}
	}
	return &StatusError{Status: resp.StatusCode, Message: e.Error}
}

// Get returns the activity with the given ID, or an error wrapping
// activitystore.ErrNotFound.
func (c *Client) Get(ctx context.Context, id activitystore.ID) (activitystore.Activity, error) {
	req, err := c.request(ctx, http.MethodGet, "/v1/activities/"+id.String(), nil, nil)
	if err != nil {
		return activitystore.Activity{}, err
	}
	var a activitystore.Activity
	err = c.do(req, &a)
	return a, err
}

// Append stores the activities, all or none, and returns their IDs in
// order. A refused activity is a *activitystore.ValidationError naming it.
func (c *Client) Append(ctx context.Context, acts ...activitystore.Activity) ([]activitystore.ID, error) {
	if len(acts) == 0 {
		return nil, &activitystore.ValidationError{Index: 0, Reason: "no activities"}
	}
	body, err := json.Marshal(acts)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req, err := c.request(ctx, http.MethodPost, "/v1/activities", nil, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	var out struct {
		IDs []activitystore.ID `json:"ids"`
	}
	if err := c.do(req, &out); err != nil {
		return nil, err
	}
	if len(out.IDs) != len(acts) {
		return nil, fmt.Errorf("client: the server stored %d activities of %d", len(out.IDs), len(acts))
	}
	return out.IDs, nil
}

// Recent returns the newest activities, newest first: limit of them (0 means
// activitystore.DefaultLimit) after skipping skip.
func (c *Client) Recent(ctx context.Context, limit, skip int) ([]activitystore.Activity, error) {
	page, err := c.Query().Limit(limit).Skip(skip).All(ctx)
	return page.Activities, err
}
