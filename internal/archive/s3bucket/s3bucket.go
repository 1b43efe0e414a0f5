// Package s3bucket is an archive.Bucket in an S3-compatible object store,
// through the MinIO client. It is a package of its own so that only what
// archives to S3 links the client.
//
// A single PUT is atomic in S3 (an object is visible whole or not at all),
// which is all archive.Bucket asks of Put. Objects are named
// "<prefix><archive name>"; List is a recursive listing of that prefix,
// which S3 returns in key order. Put sends the object with a Content-MD5, so
// a body damaged in transit is refused rather than stored.
package s3bucket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/kiln-dev/kiln/internal/archive"
)

// Bucket is an archive.Bucket in one S3 bucket, under an optional key prefix.
type Bucket struct {
	c      *minio.Client
	bucket string
	prefix string
}

var _ archive.Bucket = (*Bucket)(nil)

// New returns the Bucket storing objects in bucket under prefix (empty, or
// ending in "/") through c. The S3 bucket must exist.
func New(c *minio.Client, bucket, prefix string) (*Bucket, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("s3bucket: prefix %q must end in /", prefix)
	}
	return &Bucket{c: c, bucket: bucket, prefix: prefix}, nil
}

// Put uploads data as one object in one request.
func (b *Bucket) Put(ctx context.Context, name string, data []byte) error {
	_, err := b.c.PutObject(ctx, b.bucket, b.prefix+name, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/vnd.apache.parquet", SendContentMd5: true, DisableMultipart: true})
	if err != nil {
		return fmt.Errorf("s3bucket: put %s: %w", name, err)
	}
	return nil
}

// Get downloads the object name; a missing object is archive.ErrNotExist.
func (b *Bucket) Get(ctx context.Context, name string) ([]byte, error) {
	obj, err := b.c.GetObject(ctx, b.bucket, b.prefix+name, minio.GetObjectOptions{})
	if err == nil {
		defer obj.Close()
		var data []byte
		if data, err = io.ReadAll(obj); err == nil {
			return data, nil
		}
	}
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil, fmt.Errorf("s3bucket: get %s: %w", name, archive.ErrNotExist)
	}
	return nil, fmt.Errorf("s3bucket: get %s: %w", name, err)
}

// List returns the objects under the prefix whose names start with prefix,
// in key order.
func (b *Bucket) List(ctx context.Context, prefix string) ([]archive.Object, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine on an early return
	var objs []archive.Object
	for o := range b.c.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3bucket: list %q: %w", prefix, o.Err)
		}
		objs = append(objs, archive.Object{Name: strings.TrimPrefix(o.Key, b.prefix), Size: o.Size})
	}
	return objs, nil
}

// Delete removes the object name; S3 does not mind a missing one.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	if err := b.c.RemoveObject(ctx, b.bucket, b.prefix+name, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil
		}
		return fmt.Errorf("s3bucket: delete %s: %w", name, err)
	}
	return nil
}
