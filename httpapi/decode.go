package httpapi

import (
	"errors"

	"github.com/activitystore/activitystore"
)

// fieldError says what is wrong with one field of an activity's JSON.
type fieldError struct {
	field  string // empty when the activity as a whole is wrong
	reason string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.reason
	}
	return e.field + " " + e.reason
}

// decodeActivity decodes the JSON object raw as an activity, strictly (see
// activitystore.Activity.UnmarshalJSON): an unknown or ill-typed field is
// an error that names it.
func decodeActivity(raw []byte) (activitystore.Activity, error) {
	var a activitystore.Activity
	if err := a.UnmarshalJSON(raw); err != nil {
		var ve *activitystore.ValidationError
		if errors.As(err, &ve) {
			return a, &fieldError{field: ve.Field, reason: ve.Reason}
		}
		return a, &fieldError{reason: err.Error()}
	}
	return a, nil
}
