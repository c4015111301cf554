// Package oci is Wharf's domain core: the grammar of repository names, tags
// and digests, manifest parsing, and the error codes of the OCI Distribution
// Specification. It does no I/O, so every other package can depend on it.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Code is an OCI Distribution error code, as it appears in error bodies.
type Code string

// The error codes of the distribution spec (plus TAG_INVALID,
// RANGE_INVALID and UNAVAILABLE, which CNCF Distribution also uses and
// clients understand).
const (
	CodeBlobUnknown         Code = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       Code = "DIGEST_INVALID"
	CodeManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     Code = "MANIFEST_INVALID"
	CodeManifestUnknown     Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid         Code = "NAME_INVALID"
	CodeNameUnknown         Code = "NAME_UNKNOWN"
	CodeSizeInvalid         Code = "SIZE_INVALID"
	CodeTagInvalid          Code = "TAG_INVALID"
	CodeRangeInvalid        Code = "RANGE_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeDenied              Code = "DENIED"
	CodeUnsupported         Code = "UNSUPPORTED"
	CodeTooManyRequests     Code = "TOOMANYREQUESTS"
	CodeUnavailable         Code = "UNAVAILABLE" // a store is down or full: try later
	CodeUnknown             Code = "UNKNOWN"
)

var codeInfo = map[Code]struct {
	status  int
	message string
}{
	CodeBlobUnknown:         {http.StatusNotFound, "blob unknown to registry"},
	CodeBlobUploadInvalid:   {http.StatusBadRequest, "blob upload invalid"},
	CodeBlobUploadUnknown:   {http.StatusNotFound, "blob upload unknown to registry"},
	CodeDigestInvalid:       {http.StatusBadRequest, "provided digest did not match uploaded content"},
	CodeManifestBlobUnknown: {http.StatusBadRequest, "manifest references a manifest or blob unknown to registry"},
	CodeManifestInvalid:     {http.StatusBadRequest, "manifest invalid"},
	CodeManifestUnknown:     {http.StatusNotFound, "manifest unknown to registry"},
	CodeNameInvalid:         {http.StatusBadRequest, "invalid repository name"},
	CodeNameUnknown:         {http.StatusNotFound, "repository name not known to registry"},
	CodeSizeInvalid:         {http.StatusBadRequest, "provided length did not match content length"},
	CodeTagInvalid:          {http.StatusBadRequest, "invalid tag"},
	CodeRangeInvalid:        {http.StatusRequestedRangeNotSatisfiable, "invalid content range"},
	CodeUnauthorized:        {http.StatusUnauthorized, "authentication required"},
	CodeDenied:              {http.StatusForbidden, "requested access to the resource is denied"},
	CodeUnsupported:         {http.StatusMethodNotAllowed, "the operation is unsupported"},
	CodeTooManyRequests:     {http.StatusTooManyRequests, "too many requests"},
	CodeUnavailable:         {http.StatusServiceUnavailable, "service unavailable"},
	CodeUnknown:             {http.StatusInternalServerError, "unknown error"},
}

// Error is an error the registry reports to a client: an OCI error code, the
// HTTP status it is sent with, a human message and optional structured detail.
type Error struct {
	Code    Code
	Status  int
	Message string
	Detail  any
}

func (e *Error) Error() string {
	if e.Detail != nil {
		return fmt.Sprintf("%s: %s (%v)", e.Code, e.Message, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is makes errors.Is match on the code alone, so callers can test
// errors.Is(err, oci.ErrBlobUnknown) whatever the message or detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// NewError returns an error with the code's default status and message.
func NewError(code Code) *Error {
	info, ok := codeInfo[code]
	if !ok {
		info = codeInfo[CodeUnknown]
	}
	return &Error{Code: code, Status: info.status, Message: info.message}
}

// Errorf returns an error with the code's default status and the given message.
func Errorf(code Code, format string, args ...any) *Error {
	e := NewError(code)
	e.Message = fmt.Sprintf(format, args...)
	return e
}

// WithDetail returns a copy of e carrying detail.
func (e *Error) WithDetail(detail any) *Error {
	c := *e
	c.Detail = detail
	return &c
}

// WithStatus returns a copy of e sent with another HTTP status.
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

// ErrorResponse is the body of an OCI error response: what the server
// writes (Error.Body) and clients and tests read (ParseErrorResponse).
type ErrorResponse struct {
	Errors []ErrorInfo `json:"errors"`
}

// ErrorInfo is one error of an ErrorResponse. Detail stays raw: its shape
// depends on the code (the batch endpoint's platform list, a size limit).
type ErrorInfo struct {
	Code    Code            `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Body is e's wire form, an ErrorResponse holding e alone.
func (e *Error) Body() []byte {
	info := ErrorInfo{Code: e.Code, Message: e.Message}
	if e.Detail != nil {
		info.Detail, _ = json.Marshal(e.Detail)
	}
	b, _ := json.Marshal(ErrorResponse{Errors: []ErrorInfo{info}})
	return b
}

// ParseErrorResponse decodes an OCI error body; ok is false when body is
// not one (not JSON, or no errors in it).
func ParseErrorResponse(body []byte) (r ErrorResponse, ok bool) {
	if json.Unmarshal(body, &r) != nil || len(r.Errors) == 0 {
		return ErrorResponse{}, false
	}
	return r, true
}

// Sentinel errors for errors.Is.
var (
	ErrBlobUnknown         = NewError(CodeBlobUnknown)
	ErrBlobUploadInvalid   = NewError(CodeBlobUploadInvalid)
	ErrBlobUploadUnknown   = NewError(CodeBlobUploadUnknown)
	ErrDigestInvalid       = NewError(CodeDigestInvalid)
	ErrManifestBlobUnknown = NewError(CodeManifestBlobUnknown)
	ErrManifestInvalid     = NewError(CodeManifestInvalid)
	ErrManifestUnknown     = NewError(CodeManifestUnknown)
	ErrNameInvalid         = NewError(CodeNameInvalid)
	ErrNameUnknown         = NewError(CodeNameUnknown)
	ErrSizeInvalid         = NewError(CodeSizeInvalid)
	ErrTagInvalid          = NewError(CodeTagInvalid)
	ErrRangeInvalid        = NewError(CodeRangeInvalid)
	ErrUnauthorized        = NewError(CodeUnauthorized)
	ErrDenied              = NewError(CodeDenied)
	ErrUnsupported         = NewError(CodeUnsupported)
)

// AsError returns err as an *Error, or an UNKNOWN 500 error wrapping nothing
// of err's text (internal details are logged, not sent to clients).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return NewError(CodeUnknown)
}
