"""Privacy router: classifies model requests and sends sensitive ones only to local models."""
