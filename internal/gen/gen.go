// Package gen generates realistic, deterministic platform activity: skewed
// types and users, system events, consistent labels, JSON details and a few
// late arrivals. The same seed and size always give the same activities.
package gen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/activitystore/activitystore"
)

// Kind is one activity type with the labels that go with it.
type Kind struct {
	Type, Module, Action, APICall, Resource string
	System                                  bool // a system event: no user
}

// Kinds are the activity types, most common first.
var Kinds = []Kind{
	{"user.login", "auth", "login", "POST /api/auth/login", "", false},
	{"lab.open", "lab", "open", "GET /api/lab/{id}", "lab", false},
	{"model.query", "models", "query", "POST /api/serving/{id}/query", "model", false},
	{"data.read", "data", "read", "GET /api/data/{id}", "dataset", false},
	{"user.logout", "auth", "logout", "POST /api/auth/logout", "", false},
	{"lab.run", "lab", "run", "POST /api/lab/{id}/run", "lab", false},
	{"data.ingest", "data", "ingest", "POST /api/data/ingest", "dataset", false},
	{"model.deploy", "models", "deploy", "POST /api/serving/deploy", "model", false},
	{"service.status", "cluster", "update", "", "service", true},
	{"lab.create", "lab", "create", "POST /api/lab", "lab", false},
	{"model.undeploy", "models", "undeploy", "DELETE /api/serving/{id}", "model", false},
	{"resource.allocate", "cluster", "allocate", "", "node", true},
	{"data.delete", "data", "delete", "DELETE /api/data/{id}", "dataset", false},
	{"lab.delete", "lab", "delete", "DELETE /api/lab/{id}", "lab", false},
	{"config.update", "settings", "update", "PUT /api/settings", "config", false},
	{"model.create", "models", "create", "POST /api/models", "model", false},
	{"cluster.scale", "cluster", "scale", "POST /api/cluster/scale", "cluster", false},
	{"user.create", "auth", "create", "POST /api/users", "user", false},
	{"apikey.create", "auth", "create", "POST /api/keys", "apikey", false},
	{"error.raised", "platform", "error", "", "service", true},
	{"model.delete", "models", "delete", "DELETE /api/models/{id}", "model", false},
	{"quota.exceeded", "cluster", "deny", "", "quota", true},
	{"user.delete", "auth", "delete", "DELETE /api/users/{id}", "user", false},
	{"security.alert", "security", "alert", "", "user", false},
}

// Config sets the size and shape of a data set.
type Config struct {
	N     int       // activities; default 1,000,000
	Seed  uint64    // default 1
	Users int       // distinct users; default 20,000
	Days  int       // span; default 30
	End   time.Time // newest event time; default 2026-11-01T00:00:00Z
}

func (c *Config) defaults() {
	if c.N == 0 {
		c.N = 1_000_000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Users == 0 {
		c.Users = 20_000
	}
	if c.Days == 0 {
		c.Days = 30
	}
	if c.End.IsZero() {
		c.End = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	}
}

// Generator yields the activities of one data set in arrival order: event
// times rise but for about 3% late arrivals, up to 10 minutes out of order.
type Generator struct {
	cfg      Config
	r        *rand.Rand
	i        int
	start    time.Time
	step     float64   // ns between activities
	typeCDF  []float64 // cumulative weights of Kinds
	userCDF  []float64
	details  []byte
	UserName func(i int) string
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	cfg.defaults()
	g := &Generator{cfg: cfg, r: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	span := time.Duration(cfg.Days) * 24 * time.Hour
	g.start = cfg.End.Add(-span)
	g.step = float64(span) / float64(cfg.N)
	// Types: zipf-like with exponent 1.1 (user.login about 26%, the rarest
	// about 1%); security.alert is pinned near 1%.
	w := make([]float64, len(Kinds))
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), 1.1)
	}
	g.typeCDF = cdf(w)
	// Users: rank 1 holds about 14%, then a zipf tail.
	uw := make([]float64, cfg.Users)
	for i := range uw {
		uw[i] = 1 / math.Pow(float64(i+1), 0.95)
	}
	uw[0] = 0
	var rest float64
	for _, x := range uw {
		rest += x
	}
	uw[0] = rest * 0.14 / 0.86
	g.userCDF = cdf(uw)
	g.UserName = func(i int) string { return fmt.Sprintf("user-%05d", i) }
	return g
}

func cdf(w []float64) []float64 {
	out := make([]float64, len(w))
	var sum float64
	for i, x := range w {
		sum += x
		out[i] = sum
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func draw(r *rand.Rand, cdf []float64) int {
	i, _ := slices.BinarySearch(cdf, r.Float64())
	return min(i, len(cdf)-1)
}

// Len returns the size of the data set.
func (g *Generator) Len() int { return g.cfg.N }

// Next fills a with the next activity and reports false when none is left.
// a.Details aliases a buffer reused by the following call.
func (g *Generator) Next(a *activitystore.Activity) bool {
	if g.i >= g.cfg.N {
		return false
	}
	r := g.r
	t := g.start.Add(time.Duration(float64(g.i) * g.step))
	if r.IntN(100) < 3 {
		t = t.Add(-time.Duration(r.Int64N(int64(10 * time.Minute))))
	}
	g.i++
	k := Kinds[draw(r, g.typeCDF)]
	*a = activitystore.Activity{Time: t, Type: k.Type, Module: k.Module, Action: k.Action, APICall: k.APICall}
	if !k.System {
		a.UserID = g.UserName(draw(r, g.userCDF))
	}
	if k.Resource != "" {
		a.Resource = fmt.Sprintf("%s/%d", k.Resource, r.IntN(500))
	}
	g.details = g.appendDetails(g.details[:0], k, a)
	a.Details = g.details
	return true
}

var agents = []string{
	"kamiwaza-sdk/0.5.1 python/3.11", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "curl/8.5.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15", "kamiwaza-cli/1.2.0",
}
var messages = []string{
	"request completed", "resource is ready", "operation accepted and queued for processing",
	"completed with warnings: retry budget used", "permission check passed for the requested scope",
	"cache miss, loaded from storage", "scheduled on node pool gpu-a100",
}

func (g *Generator) appendDetails(dst []byte, k Kind, a *activitystore.Activity) []byte {
	r := g.r
	status := 200
	if r.IntN(20) == 0 {
		status = []int{400, 403, 404, 409, 500, 503}[r.IntN(6)]
	}
	d := struct {
		IP         string `json:"ip"`
		Status     int    `json:"status"`
		DurationMS int    `json:"duration_ms"`
		RequestID  string `json:"request_id"`
		UserAgent  string `json:"user_agent,omitempty"`
		Message    string `json:"message"`
		Region     string `json:"region,omitempty"`
		Extra      string `json:"extra,omitempty"`
	}{
		IP:         fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)),
		Status:     status,
		DurationMS: int(r.ExpFloat64() * 40),
		RequestID:  fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()),
		Message:    messages[r.IntN(len(messages))],
		Region:     []string{"us-east-1", "us-west-2", "eu-central-1"}[r.IntN(3)],
	}
	if !k.System {
		d.UserAgent = agents[r.IntN(len(agents))]
	}
	if r.IntN(4) == 0 {
		d.Extra = messages[r.IntN(len(messages))] + "; " + messages[r.IntN(len(messages))]
	}
	b, _ := json.Marshal(d)
	return append(dst, b...)
}
