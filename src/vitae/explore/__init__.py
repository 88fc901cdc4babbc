"""``vitae explore RUN``: a local web page to play with a trained model's latent spaces.

``explorer`` holds the model-side computations (codes to images, images to codes, factor
traversals), ``server`` the HTTP server and its JSON API, ``page.html`` the page itself (inline
HTML, CSS and JavaScript, nothing fetched from elsewhere).
"""
