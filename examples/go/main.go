// A shop backend sending click events to streamrec with franz-go, a pure-Go Kafka client.
// Each event is JSON keyed by its user id; franz-go's default partitioner hashes keys with
// murmur2, as Kafka's Java client does. Run: go run . BOOTSTRAP TOPIC EVENTS USERS
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type event struct {
	EventID string  `json:"event_id"`
	Type    string  `json:"type"`
	UserID  string  `json:"user_id"`
	ItemID  string  `json:"item_id"`
	TS      float64 `json:"ts"`
}

func arg(n int, fallback string) string {
	if len(os.Args) > n {
		return os.Args[n]
	}
	return fallback
}

func main() {
	bootstrap, topic := arg(1, "127.0.0.1:9092"), arg(2, "shop.clicks")
	events, _ := strconv.Atoi(arg(3, "1000"))
	users, _ := strconv.Atoi(arg(4, "50"))

	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // acknowledged once replicated (idempotent by default)
	)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	now := float64(time.Now().UnixMilli()) / 1000
	ctx := context.Background()
	for n := 0; n < events; n++ {
		user := fmt.Sprintf("go-u%d", n%users)
		value, _ := json.Marshal(event{fmt.Sprintf("go-%d", n), "click", user, fmt.Sprintf("i%d", n%97), now + float64(n)/1000})
		client.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(user), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	if err := client.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent %d events for %d users to %s\n", events, users, topic)
}
