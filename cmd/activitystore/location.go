package main

import (
	"fmt"
	"strings"

	"github.com/activitystore/activitystore"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// location is where a store's archives are: the global flags every
// command takes, since a store whose archives are in a bucket opens only
// with that bucket.
type location struct {
	archives string // a folder, or s3://bucket/prefix
	s3       activitystore.S3Options
	node     int
}

// locationFlags are the names of the flags of location, each also read
// from its ACTIVITYSTORE_ variable.
var locationFlags = []string{"archives", "s3-endpoint", "s3-region", "s3-access-key", "s3-secret-key", "s3-cache-dir", "s3-cache", "s3-retry-for", "node"}

func (l *location) register(f *pflag.FlagSet) {
	f.StringVar(&l.archives, "archives", "", "where the archives are: s3://bucket/prefix for an S3-compatible bucket (endpoint and credentials from the --s3-* flags or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), or a folder (default: archive/ in --dir)")
	f.StringVar(&l.s3.Endpoint, "s3-endpoint", "", "the S3 server, host:port or http(s)://host:port (default: $AWS_ENDPOINT_URL, else s3.amazonaws.com)")
	f.StringVar(&l.s3.Region, "s3-region", "", "the bucket's region (default: $AWS_REGION)")
	f.StringVar(&l.s3.AccessKey, "s3-access-key", "", "the S3 access key (default: $AWS_ACCESS_KEY_ID)")
	f.StringVar(&l.s3.SecretKey, "s3-secret-key", "", "the S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")
	f.StringVar(&l.s3.CacheDir, "s3-cache-dir", "", "a local folder that keeps what reads fetch from the bucket (default: none)")
	f.Var(sizeFlag{&l.s3.CacheBytes}, "s3-cache", "the most --s3-cache-dir holds, like 1GiB")
	f.Var(durationFlag{&l.s3.RetryFor, false}, "s3-retry-for", "how long a failed S3 request is retried without a deadline of its own, like 30s")
	f.IntVar(&l.node, "node", 0, fmt.Sprintf("the store's node number in the bucket, 0 to %d: unique among the stores that share --archives", activitystore.MaxNode))
	for _, name := range locationFlags {
		fl := f.Lookup(name)
		fl.Usage += " [$" + envName(name) + "]"
	}
}

// applyLocationEnv sets the location flags not given on the command line
// from their variables.
func applyLocationEnv(c *cobra.Command) error {
	var err error
	for _, name := range locationFlags {
		if fl := c.Flags().Lookup(name); fl != nil && err == nil {
			err = setFromEnv(fl)
		}
	}
	return err
}

// isBucket reports whether the archives are in a bucket.
func (l *location) isBucket() bool { return strings.HasPrefix(l.archives, "s3://") }

// apply puts the location into o.
func (l *location) apply(o *activitystore.Options) error {
	o.Node = l.node
	switch {
	case l.isBucket():
		loc, err := activitystore.ParseS3URL(l.archives)
		if err != nil {
			return fmt.Errorf("invalid --archives: %v", err)
		}
		s3 := l.s3
		s3.Bucket, s3.Prefix = loc.Bucket, loc.Prefix
		if scheme, host, ok := strings.Cut(s3.Endpoint, "://"); ok {
			if scheme != "http" && scheme != "https" {
				return fmt.Errorf("invalid --s3-endpoint %q: want host:port or http(s)://host:port", s3.Endpoint)
			}
			s3.Endpoint, s3.Insecure = strings.TrimSuffix(host, "/"), scheme == "http"
		}
		o.S3 = &s3
	case l.archives != "":
		if o.ArchiveDir != "" && o.ArchiveDir != l.archives {
			return fmt.Errorf("--archives and --archive-dir both say where archives go: give one")
		}
		o.ArchiveDir = l.archives
	}
	return nil
}
