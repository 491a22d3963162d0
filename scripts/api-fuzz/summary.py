import sys
print("api-fuzz: placeholder", sys.argv[1:])
