package activitystore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/activitystore/activitystore"
)

// day is the fixed day the examples record activity on.
var day = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

// openExample opens a store in a fresh temporary directory.
func openExample() (*activitystore.Store, func()) {
	dir, err := os.MkdirTemp("", "activitystore-example")
	if err != nil {
		log.Fatal(err)
	}
	s, err := activitystore.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	return s, func() { s.Close(); os.RemoveAll(dir) }
}

func seed(s *activitystore.Store) []activitystore.ID {
	ids, err := s.Append(context.Background(),
		activitystore.Activity{Time: day, Type: "user.login", UserID: "ada", Module: "auth", Action: "login"},
		activitystore.Activity{Time: day.Add(time.Minute), Type: "lab.create", UserID: "ada", Module: "lab",
			Action: "create", Resource: "lab/7", Details: json.RawMessage(`{"gpus":1}`)},
		activitystore.Activity{Time: day.Add(2 * time.Minute), Type: "model.deploy", UserID: "bob", Module: "models",
			Action: "deploy", APICall: "POST /api/serving/deploy", Resource: "model/42"},
		activitystore.Activity{Time: day.Add(3 * time.Minute), Type: "service.status", Module: "cluster", Action: "update"},
	)
	if err != nil {
		log.Fatal(err)
	}
	return ids
}

func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "activitystore-example")
	defer os.RemoveAll(dir)

	s, err := activitystore.Open(dir, &activitystore.Options{NoSync: false})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	_, err = activitystore.Open(dir, nil) // a second store on the same dir
	fmt.Println(err != nil)
	// Output: true
}

func ExampleStore_Append() {
	s, done := openExample()
	defer done()
	ids, err := s.Append(context.Background(), activitystore.Activity{
		Time: day, Type: "model.deploy", UserID: "ada", Module: "models", Action: "deploy",
		Resource: "model/42", Details: json.RawMessage(`{"replicas":2}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	a, _ := s.Get(context.Background(), ids[0])
	fmt.Println(a.Type, a.UserID, a.Time.Format(time.RFC3339), string(a.Details))

	_, err = s.Append(context.Background(), activitystore.Activity{UserID: "ada"})
	fmt.Println(err)
	// Output:
	// model.deploy ada 2026-03-14T09:00:00Z {"replicas":2}
	// activitystore: invalid activity at index 0: field "type": is required
}

func ExampleStore_Recent() {
	s, done := openExample()
	defer done()
	seed(s)
	acts, err := s.Recent(context.Background(), 2, 0) // limit 2, skip 0
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range acts {
		fmt.Printf("%s %s user=%q\n", a.Time.Format("15:04"), a.Type, a.UserID)
	}
	// Output:
	// 09:03 service.status user=""
	// 09:02 model.deploy user="bob"
}

func ExampleStore_Query() {
	s, done := openExample()
	defer done()
	seed(s)
	ctx := context.Background()
	q := s.Query().Users("ada").Since(day).Limit(1)
	for {
		page, err := q.All(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, a := range page.Activities {
			fmt.Printf("%s resource=%q\n", a.Type, a.Resource)
		}
		if page.Next == "" {
			break
		}
		q.After(page.Next)
	}
	for a, err := range s.Query().System().Iter(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("system:", a.Type)
	}
	// Output:
	// lab.create resource="lab/7"
	// user.login resource=""
	// system: service.status
}

func ExampleQuery_Count() {
	s, done := openExample()
	defer done()
	seed(s)
	n, err := s.Query().Types("user.login", "lab.create").Since(day).Until(day.Add(24 * time.Hour)).Count(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	// Output: 2
}

func ExampleStore_Compact() {
	dir, _ := os.MkdirTemp("", "activitystore-example")
	defer os.RemoveAll(dir)
	// Archive windows one day after they end; keep 90 days. The clock is
	// fixed two days after the example's activity.
	now := func() time.Time { return day.Add(48 * time.Hour) }
	s, err := activitystore.Open(dir, &activitystore.Options{ColdAfter: 24 * time.Hour, RetainFor: 90 * 24 * time.Hour, Now: now})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	seed(s)

	if err := s.Compact(ctx); err != nil {
		log.Fatal(err)
	}
	st, _ := s.Stats(ctx)
	fmt.Println("archives:", st.Archives, "archived activities:", st.ArchivedActivities)

	// Reads span pebble and the archives alike.
	page, _ := s.Query().Users("ada").All(ctx)
	for _, a := range page.Activities {
		fmt.Println(a.Type, a.Resource)
	}
	// Output:
	// archives: 1 archived activities: 4
	// lab.create lab/7
	// user.login
}

func ExampleQuery_Timeline() {
	s, done := openExample()
	defer done()
	seed(s)

	// Activities per two minutes between 9:00 and 9:06.
	buckets, err := s.Query().Since(day).Until(day.Add(6*time.Minute)).Timeline(context.Background(), 2*time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range buckets {
		fmt.Println(b.Start.Format("15:04"), b.Count)
	}
	// Output:
	// 09:00 2
	// 09:02 2
	// 09:04 0
}

func ExampleQuery_CountBy() {
	s, done := openExample()
	defer done()
	seed(s)

	counts, err := s.Query().CountBy(context.Background(), "user_id")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range counts {
		fmt.Printf("%q %d\n", c.Value, c.Count)
	}
	// Output:
	// "ada" 2
	// "" 1
	// "bob" 1
}

func ExampleStore_Tail() {
	s, done := openExample()
	defer done()
	ctx := context.Background()

	// The tail sees what is appended after the call, as it becomes visible.
	deploys, err := s.Tail(ctx, s.Query().Types("model.deploy"), "")
	if err != nil {
		log.Fatal(err)
	}
	seed(s)
	for ev, err := range deploys {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Activity.Type, ev.Activity.Resource)
		break // or keep following; ev.Cursor resumes after this one
	}
	// Output: model.deploy model/42
}

// Two stores on two machines archive into one bucket, each with its own node
// number; a third process answers queries over both stores' archives. (Not
// run: it needs an S3-compatible server.)
func ExampleOpenReader() {
	ctx := context.Background()
	bucket := &activitystore.S3Options{
		Endpoint: "s3.internal:8333", Insecure: true, Bucket: "activity", Prefix: "prod",
		// AccessKey and SecretKey: here from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	}
	// On machine A (machine B is the same with Node: 2):
	w, err := activitystore.Open("/var/lib/activity", &activitystore.Options{S3: bucket, Node: 1, ColdAfter: 24 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	// On a query node:
	r, err := activitystore.OpenReader(&activitystore.Options{S3: bucket, PollEvery: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	page, err := r.Query().Types("model.deploy").Limit(20).All(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range page.Activities {
		fmt.Println(a.ID.Node(), a.Time.Format(time.RFC3339), a.UserID)
	}
}
