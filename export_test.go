package activitystore

import "time"

// SealDue seals every segment due by the store's clock, for the external
// tests and benchmarks.
var SealDue = (*Store).sealDue

// Settle flushes the memtable and waits for pebble's compactions to finish,
// so benchmarks measure a store at rest.
func Settle(s *Store) error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	for i := 0; i < 600; i++ {
		m := s.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Levels[0].TablesCount <= 1 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
