curl https://api.aqta.ai/v1/models \
  -H "Authorization: Bearer sk-aqta-your-key-here"
