package s3

import (
	"context"
	"errors"
	"fmt"
	"net"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/wharf-registry/wharf/registry"
)

// markUnavailable adds, outermost on every S3 call (so after the SDK's
// retries gave up), a step that wraps "cannot now" errors in
// registry.ErrUnavailable: the server answers 503, not 500. One place
// for every operation of the store.
func markUnavailable(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("WharfUnavailable",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			if err != nil && unavailable(ctx, err) {
				err = fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
			}
			return out, md, err
		}), middleware.Before)
}

// unavailable: the request never got an answer (connection refused or
// reset, a timeout) or the server said it cannot serve now (5xx, as MinIO
// answers while it starts; 499 ClientDisconnected while our side is still
// there, as MinIO answers requests in flight when it shuts down: found by
// the fault soak).
func unavailable(ctx context.Context, err error) bool {
	var se *smithyhttp.RequestSendError
	var ne net.Error
	if errors.As(err, &se) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && (re.HTTPStatusCode() >= 500 || re.HTTPStatusCode() == 499 && ctx.Err() == nil)
}
