package s3bucket

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Open returns the Bucket an archive location URL names:
//
//	s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=REGION&insecure=true
//
// The endpoint defaults to $AWS_ENDPOINT_URL, then s3.amazonaws.com; the
// credentials come from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY (and
// $AWS_SESSION_TOKEN), never from the URL, so they stay out of command
// lines and logs. insecure=true speaks plain HTTP (a local MinIO). Open
// checks that the bucket exists.
func Open(ctx context.Context, location string) (*Bucket, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("archive location %q: write s3://BUCKET/PREFIX (with ?endpoint=HOST:PORT for a store other than AWS)", location)
	}
	if u.User != nil {
		return nil, fmt.Errorf("archive location %q: credentials do not go in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", u.Redacted())
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" && k != "insecure" {
			return nil, fmt.Errorf("archive location %q: unknown parameter %q (allowed: endpoint, region, insecure)", location, k)
		}
	}
	endpoint, secure := q.Get("endpoint"), q.Get("insecure") != "true"
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	if strings.HasPrefix(endpoint, "http://") {
		endpoint, secure = strings.TrimPrefix(endpoint, "http://"), false
	}
	endpoint = strings.TrimPrefix(endpoint, "https://")
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	region := q.Get("region")
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewEnvAWS(),
		Secure:       secure,
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("archive location %q: %w", location, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := c.BucketExists(ctx, u.Host)
	switch {
	case err != nil:
		return nil, fmt.Errorf("archive location %q: reaching the bucket at %s: %w", location, endpoint, err)
	case !ok:
		return nil, fmt.Errorf("archive location %q: bucket %q does not exist at %s: create it first", location, u.Host, endpoint)
	}
	return New(c, u.Host, prefix)
}
