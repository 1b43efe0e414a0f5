package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/kiln-dev/kiln/client"
)

// Reading the ranking features of one user and their candidate posts from
// three replicas, hedging calls slower than about the p95.
func Example() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Options{
		Addrs: []string{"10.0.0.1:7071", "10.0.0.2:7071", "10.0.0.3:7071"},
		Hedge: 2 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	candidates := []int64{7, 8, 9}
	req := &client.Request{Selection: client.Service("ranking")}
	req.Add("user", client.Int("user_id", 42))
	req.AddInts("post", "post_id", candidates...)
	resp, err := c.Get(ctx, req)
	if err != nil {
		log.Fatal(err) // status.Code(err) says what went wrong
	}
	user := resp.Entity("user")
	fmt.Println("user likes in 24h:", user.Int64("user_engagement:likes_24h", 0))
	posts := resp.Entity("post")
	views := posts.Column("post_engagement:views_5m")
	dwell := posts.Column("post_engagement:dwell_mean_1h")
	for i, id := range candidates {
		if !posts.Found(i) {
			continue // a post with no events yet
		}
		fmt.Println(id, views.Int64(i), dwell.Float64(i), dwell.Valid(i))
	}
}

// Preparing a hot feature list once; every call then sends its id.
func ExampleClient_Prepare() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Options{Addrs: []string{"127.0.0.1:7071"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, err := c.Prepare(ctx, client.Features("user_engagement:views_1h", "user_engagement:last_post"))
	if err != nil {
		log.Fatal(err)
	}
	req := &client.Request{Prepared: p}
	for _, batch := range [][]int64{{1, 2, 3}, {4, 5}} {
		req.Reset() // reuses the request's memory
		req.AddInts("user", "user_id", batch...)
		resp, err := c.Get(ctx, req)
		if err != nil {
			log.Fatal(err)
		}
		users := resp.Entity("user")
		for i := range users.Len() {
			fmt.Println(batch[i], users.Status(i), users.Int64("user_engagement:views_1h", i))
		}
	}
}
