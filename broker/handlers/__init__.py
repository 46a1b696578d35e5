"""One module per broker api (or pair of apis); broker.dispatcher routes requests to them."""
